import type { IncomingMessage } from 'node:http';
import { isIPv6 } from 'node:net';

/** One wrong secret presented over HTTP; `throttled` when it was refused unchecked because its address is blocked. */
export interface AuthFailure {
  address: string;
  kind: 'vault_key' | 'admin_token';
  throttled: boolean;
}

export interface AuthThrottleOptions {
  /** Wrong secrets an address may present per window before it is refused for the rest of it. */
  maxFailures: number;
  windowMs: number;
  /** Proxies in front of leash that append to X-Forwarded-For; 0 trusts only the socket's peer. */
  trustProxyHops?: number;
  /** Told of every failure (alerts count them); must not throw or block. */
  onFailure?: (failure: AuthFailure) => void;
  now?: () => number;
}

export interface AuthThrottle {
  /** Seconds this request's address must wait before presenting another secret, or 0 if it may. */
  retryAfter(req: IncomingMessage): number;
  /** Records a wrong secret from this request's address. */
  failed(req: IncomingMessage, kind: AuthFailure['kind']): void;
  /** Records a request refused by retryAfter(), so persistence after the block is counted too. */
  refused(req: IncomingMessage, kind: AuthFailure['kind']): void;
  /** Failures and refusals since start (for logs and tests). */
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
 * Failed-authentication limiter for the HTTP front doors: a fixed window per client address. Once an
 * address has presented `maxFailures` wrong secrets in a window, every request from it that needs a secret
 * gets 429 until the window ends, without being checked (so guessing gains nothing). Correct secrets
 * never count. In memory, per process: each replica limits on its own.
 */
export function createAuthThrottle(o: AuthThrottleOptions): AuthThrottle {
  const now = o.now ?? Date.now;
  const windows = new Map<string, { start: number; failures: number }>();
  const counts = { failures: 0, refused: 0 };

  const current = (address: string) => {
    const w = windows.get(address);
    return w && now() - w.start < o.windowMs ? w : undefined;
  };

  const sweep = () => {
    for (const [address, w] of windows) if (now() - w.start >= o.windowMs) windows.delete(address);
    for (const address of windows.keys()) {
      if (windows.size < MAX_TRACKED) break;
      windows.delete(address); // insertion order: the oldest windows go first
    }
  };

  const address = (req: IncomingMessage) => clientAddress(req, o.trustProxyHops ?? 0);

  return {
    retryAfter(req) {
      const w = current(address(req));
      if (!w || w.failures < o.maxFailures) return 0;
      return Math.max(1, Math.ceil((w.start + o.windowMs - now()) / 1000));
    },
    failed(req, kind) {
      const a = address(req);
      let w = current(a);
      if (!w) {
        if (windows.size >= MAX_TRACKED) sweep();
        windows.delete(a);
        w = { start: now(), failures: 0 };
        windows.set(a, w);
      }
      w.failures++;
      counts.failures++;
      o.onFailure?.({ address: a, kind, throttled: false });
    },
    refused(req, kind) {
      counts.refused++;
      o.onFailure?.({ address: address(req), kind, throttled: true });
    },
    counts,
  };
}
