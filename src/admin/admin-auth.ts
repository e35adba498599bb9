import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Actor } from '../audit/operator-actions.js';
import type { Db } from '../db/database.js';
import { activeOperators, anyOperators, looksLikeOperatorToken, operatorByToken } from '../keys/operators.js';
import type { AuthThrottle } from '../server/auth-throttle.js';
import { sendJson, tooManyFailures } from '../http/kit.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time comparison of a presented token with the expected one. */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  return presented !== undefined && timingSafeEqual(digest(presented), digest(expected));
}

/** The bearer token of a request, if it has one. */
export function bearerToken(req: IncomingMessage): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
}

/** Who a token proved: the break-glass admin token (`admin`, no operator id) or an active operator. */
export interface Caller {
  name: string;
  /** The operator's id; null for the admin token. */
  operatorId: string | null;
}

/** The name the break-glass LEASH_ADMIN_TOKEN records. */
export const ADMIN_NAME = 'admin';

/**
 * Who a presented token belongs to: LEASH_ADMIN_TOKEN (compared in constant time) or an active operator's token,
 * looked up by its sha-256 on every call (one indexed read, so a removed operator is refused from the next
 * request on, by every replica). Undefined for anything else, or when `mayLookUp` says the database may not be
 * asked now (a blocked address; `unchecked` is then true).
 */
export async function callerOf(
  db: Db,
  presented: string | undefined,
  adminToken: string | undefined,
  mayLookUp: () => boolean = () => true,
): Promise<{ caller?: Caller; unchecked?: boolean }> {
  if (presented === undefined || presented.length > 512) return {};
  if (adminToken && tokenMatches(presented, adminToken))
    return { caller: { name: ADMIN_NAME, operatorId: null } };
  if (!looksLikeOperatorToken(presented)) return {};
  if (!mayLookUp()) return { unchecked: true };
  const op = await operatorByToken(db, presented);
  return op ? { caller: { name: op.name, operatorId: op.id } } : {};
}

/**
 * Whether the operator doors (/admin, /console) are on: LEASH_ADMIN_TOKEN is set, or an operator is active. Without
 * the admin token the answer is read at most once per `ttlMs` (default 1 s), so requests without a token cost no
 * query each; it only decides 404 or not, never who may pass (every token is still looked up).
 */
export function operatorDoors(db: Db, adminToken: string | undefined, ttlMs = 1_000): () => Promise<boolean> {
  let known: { on: boolean; at: number } | undefined;
  return async () => {
    if (adminToken) return true;
    const now = Date.now();
    if (known && now - known.at < ttlMs) return known.on;
    known = { on: await anyOperators(db), at: now };
    return known.on;
  };
}

/** Which of these operators are still active (their console sessions may go on). */
export function operatorsStillActive(db: Db, ids: readonly string[]): Promise<Set<string>> {
  return activeOperators(db, ids);
}

/** The actor a caller records through a door. */
export function actorOf(caller: Caller, via: Actor['via']): Actor {
  return { name: caller.name, via };
}

/**
 * The /admin check: the admin token or an operator token. A wrong token counts against the address and gets 401,
 * or 429 once the address is blocked; a blocked address's operator tokens are looked up at the rate its allowance
 * had. The caller when it may go on; otherwise the answer has been written.
 */
export async function operatorAuthorized(
  req: IncomingMessage,
  res: ServerResponse,
  db: Db,
  adminToken: string | undefined,
  throttle: AuthThrottle | undefined,
): Promise<Caller | undefined> {
  const presented = bearerToken(req);
  const found = await callerOf(db, presented, adminToken, () => throttle?.mayLookUp(req) ?? true);
  if (found.caller) return found.caller;
  // No token at all is no guess, and is not counted.
  const wait =
    presented === undefined
      ? 0
      : (throttle?.reject(req, 'admin_token', found.unchecked ? 'unchecked' : 'wrong') ?? 0);
  if (wait) {
    tooManyFailures(res, wait, false);
    return undefined;
  }
  sendJson(
    res,
    401,
    { error: 'an operator token (leash operators add) or the admin token is required' },
    { 'www-authenticate': 'Bearer realm="leash-admin"' },
  );
  return undefined;
}
