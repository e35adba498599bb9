import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthThrottle } from '../server/auth-throttle.js';
import { sendJson, tooManyFailures } from '../server/http.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time comparison of a presented token with the expected one. */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  return presented !== undefined && timingSafeEqual(digest(presented), digest(expected));
}

/**
 * The admin token check every operator route shares (/admin, /metrics): a throttled address gets 429 before its
 * token is looked at, a wrong token counts against the address and gets 401. True when the caller may go on;
 * otherwise the answer has been written.
 */
export function adminAuthorized(
  req: IncomingMessage,
  res: ServerResponse,
  token: string,
  throttle: AuthThrottle | undefined,
): boolean {
  const wait = throttle?.retryAfter(req) ?? 0;
  if (wait) {
    throttle?.refused(req, 'admin_token');
    tooManyFailures(res, wait, false);
    return false;
  }
  const presented = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
  if (tokenMatches(presented, token)) return true;
  if (presented !== undefined) throttle?.failed(req, 'admin_token');
  sendJson(res, 401, { error: 'admin token required' }, { 'www-authenticate': 'Bearer realm="leash-admin"' });
  return false;
}
