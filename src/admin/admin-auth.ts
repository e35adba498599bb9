import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthThrottle } from '../server/auth-throttle.js';
import { sendJson, tooManyFailures } from '../http/kit.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time comparison of a presented token with the expected one. */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  return presented !== undefined && timingSafeEqual(digest(presented), digest(expected));
}

/**
 * The admin token check every operator route shares (/admin, /metrics): the right token is served from any
 * address; a wrong one counts against the address and gets 401, or 429 once the address is blocked. True when
 * the caller may go on; otherwise the answer has been written.
 */
export function adminAuthorized(
  req: IncomingMessage,
  res: ServerResponse,
  token: string,
  throttle: AuthThrottle | undefined,
): boolean {
  const presented = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  if (tokenMatches(presented, token)) return true;
  // No token at all is no guess, and is not counted.
  const wait = presented === undefined ? 0 : (throttle?.reject(req, 'admin_token', 'wrong') ?? 0);
  if (wait) {
    tooManyFailures(res, wait, false);
    return false;
  }
  sendJson(res, 401, { error: 'admin token required' }, { 'www-authenticate': 'Bearer realm="leash-admin"' });
  return false;
}
