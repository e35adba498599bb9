import { tokenMatches } from '../../admin/admin-auth.js';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Everything the console loads comes from its own origin; no inline script or style, no frames, no plugins. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers on every console answer: the CSP, no sniffing, no framing, no referrer to other sites, no caching. */
export function securityHeaders(
  extra: Record<string, string | string[]> = {},
): Record<string, string | string[]> {
  return {
    'content-security-policy': CONSOLE_CSP,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    // Not no-referrer: with it, Chromium sends `Origin: null` on form POSTs, which the same-origin check refuses.
    'referrer-policy': 'same-origin',
    'cross-origin-opener-policy': 'same-origin',
    'cross-origin-resource-policy': 'same-origin',
    'cache-control': 'no-store',
    ...extra,
  };
}

export function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Buffer,
  extra: Record<string, string | string[]> = {},
): void {
  res.writeHead(status, securityHeaders({ 'content-type': type, ...extra }));
  res.end(body);
}

export function sendJsonSafe(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(body));
}

/** Compares secrets in constant time (the admin API's comparison). */
export const secretEquals = tokenMatches;

/**
 * True when a state-changing request comes from a page of this origin: its Origin's host is the Host it was
 * sent to (or the forwarded host, behind trusted proxies), or, with no Origin, the browser says same-origin.
 * A request that says neither is refused: browsers always send one of them, and scripts use /admin.
 */
export function sameOrigin(req: IncomingMessage, trustProxyHops: number): boolean {
  const hosts = [req.headers.host];
  const forwarded = req.headers['x-forwarded-host'];
  if (trustProxyHops > 0 && typeof forwarded === 'string') hosts.push(forwarded.split(',')[0]?.trim());
  const origin = req.headers.origin;
  if (origin !== undefined) {
    try {
      const host = new URL(origin).host;
      return host !== '' && hosts.includes(host);
    } catch {
      return false;
    }
  }
  return req.headers['sec-fetch-site'] === 'same-origin';
}

/** Whether the browser reached us over TLS (directly or, behind trusted proxies, as they say). */
export function isHttps(req: IncomingMessage, trustProxyHops: number): boolean {
  if ('encrypted' in req.socket && req.socket.encrypted === true) return true;
  const proto = req.headers['x-forwarded-proto'];
  return trustProxyHops > 0 && typeof proto === 'string' && proto.split(',')[0]?.trim() === 'https';
}

/** One cookie's value from the Cookie header. */
export function readCookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

const MAX_FORM = 4096;

/** Reads a small urlencoded or JSON body (the sign-in and sign-out forms); undefined when over 4 KiB or unreadable. */
export function readSmallForm(req: IncomingMessage): Promise<Record<string, string> | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_FORM) chunks.push(c);
    });
    req.on('error', () => resolve(undefined));
    req.on('end', () => {
      if (size > MAX_FORM) return resolve(undefined);
      const text = Buffer.concat(chunks).toString('utf8');
      const type = req.headers['content-type'] ?? '';
      if (type.startsWith('application/json')) {
        try {
          const parsed: unknown = JSON.parse(text);
          if (typeof parsed !== 'object' || parsed === null) return resolve(undefined);
          const out: Record<string, string> = {};
          for (const [k, v] of Object.entries(parsed)) if (typeof v === 'string') out[k] = v;
          return resolve(out);
        } catch {
          return resolve(undefined);
        }
      }
      resolve(Object.fromEntries(new URLSearchParams(text)));
    });
  });
}
