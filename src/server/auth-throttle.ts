import type { IncomingMessage } from 'node:http';
import { isIPv6 } from 'node:net';
import type { WrongKeyLimit } from '../pipeline/presented-key.js';

/**
 * One wrong secret presented over HTTP (an OAuth access token the door refused is `oauth_token`, `wrong`). `reason`:
 * `malformed` (not shaped like a vault key), `wrong` (checked and
 * matched nothing), `unchecked` (refused without a check: its address is blocked and had no lookup left).
 * `throttled` when it was answered 429 because its address is blocked.
 */
export interface AuthFailure {
  address: string;
  kind: 'vault_key' | 'admin_token' | 'oauth_token';
  reason: 'malformed' | 'wrong' | 'unchecked';
  throttled: boolean;
}

export interface AuthThrottleOptions {
  /** Wrong secrets an address may present per window before its wrong secrets are answered 429. */
  maxFailures: number;
  windowMs: number;
  /** Proxies in front of leash that append to X-Forwarded-For; 0 trusts only the socket's peer. */
  trustProxyHops?: number;
  /** Told of every failure (alerts and metrics count them); must not throw or block. */
  onFailure?: (failure: AuthFailure) => void;
  now?: () => number;
}

export interface AuthThrottle {
  /** Seconds until this request's address is no longer blocked, or 0 if it is not. */
  retryAfter(req: IncomingMessage): number;
  /**
   * Whether a secret this address presents may be checked against the database now: always while it is not
   * blocked; once blocked, one lookup per `windowMs / maxFailures` (the rate its allowance had), so a blocked
   * address costs the database no more than an unblocked one and an unseen right key still gets through.
   */
  mayLookUp(req: IncomingMessage): boolean;
  /**
   * Records a wrong (or unchecked) secret and says how to answer it: 0 → 401, counted against the address's
   * allowance; otherwise the address is blocked and this is the Retry-After of a 429 (counted as throttled).
   */
  reject(req: IncomingMessage, kind: AuthFailure['kind'], reason: AuthFailure['reason']): number;
  /** Failures (answered 401) and refusals (answered 429) since start (for logs and tests). */
  readonly counts: { failures: number; refused: number };
}

/** Above this many tracked addresses, expired windows are swept (and, if still full, the oldest dropped). */
const MAX_TRACKED = 10_000;

/** An IPv6 client usually holds a whole /64, so it counts as one address; IPv4-mapped IPv6 is plain IPv4. */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped?.[1]) return mapped[1];
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::')
    ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, '').toLowerCase())
    .join(':')}::/64`;
}

/** The client's address: the socket's peer, or the entry `hops` proxies back in X-Forwarded-For. */
export function clientAddress(req: IncomingMessage, hops = 0): string {
  const peer = req.socket.remoteAddress ?? 'unknown';
  if (hops <= 0) return addressKey(peer);
  const header = req.headers['x-forwarded-for'];
  const chain = (Array.isArray(header) ? header.join(',') : (header ?? ''))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return addressKey(chain[chain.length - hops] ?? peer);
}

/**
 * Failed-authentication limiter for the HTTP front doors: a fixed window per client address. Only failures are
 * throttled, never the address: a right secret is served whatever its address did. Once an address has presented
 * `maxFailures` wrong secrets in a window, its further wrong secrets are answered 429 (not 401) until the window
 * ends, and its vault keys are looked up only at a trickle (see `mayLookUp`), so guessing gains nothing and costs
 * the database a bounded amount. In memory, per process: each replica limits on its own.
 */
export function createAuthThrottle(o: AuthThrottleOptions): AuthThrottle {
  const now = o.now ?? Date.now;
  const windows = new Map<string, { start: number; failures: number; lookedUp: number }>();
  const counts = { failures: 0, refused: 0 };
  const lookupEvery = o.windowMs / Math.max(1, o.maxFailures);

  const current = (address: string) => {
    const w = windows.get(address);
    return w && now() - w.start < o.windowMs ? w : undefined;
  };
  const blocked = (address: string) => {
    const w = current(address);
    return w && w.failures >= o.maxFailures ? w : undefined;
  };

  const sweep = () => {
    for (const [address, w] of windows) if (now() - w.start >= o.windowMs) windows.delete(address);
    for (const address of windows.keys()) {
      if (windows.size < MAX_TRACKED) break;
      windows.delete(address); // insertion order: the oldest windows go first
    }
  };

  const address = (req: IncomingMessage) => clientAddress(req, o.trustProxyHops ?? 0);
  const wait = (w: { start: number }) => Math.max(1, Math.ceil((w.start + o.windowMs - now()) / 1000));

  return {
    retryAfter(req) {
      const w = blocked(address(req));
      return w ? wait(w) : 0;
    },
    mayLookUp(req) {
      const w = blocked(address(req));
      if (!w) return true;
      if (now() - w.lookedUp < lookupEvery) return false;
      w.lookedUp = now();
      return true;
    },
    reject(req, kind, reason) {
      const a = address(req);
      const b = blocked(a);
      if (b) {
        counts.refused++;
        o.onFailure?.({ address: a, kind, reason, throttled: true });
        return wait(b);
      }
      let w = current(a);
      if (!w) {
        if (windows.size >= MAX_TRACKED) sweep();
        windows.delete(a);
        w = { start: now(), failures: 0, lookedUp: -Infinity };
        windows.set(a, w);
      }
      w.failures++;
      counts.failures++;
      o.onFailure?.({ address: a, kind, reason, throttled: false });
      return 0;
    },
    counts,
  };
}

/** This throttle's limit on wrong vault keys from one request's address, as the pipeline's key check takes it. */
export function vaultKeyLimit(throttle: AuthThrottle, req: IncomingMessage): WrongKeyLimit {
  return {
    mayLookUp: () => throttle.mayLookUp(req),
    reject: (reason) => throttle.reject(req, 'vault_key', reason),
  };
}
