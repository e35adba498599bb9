import type { AuthResult } from '../keys/authenticate.js';
import { parseVaultKey } from '../keys/vault-keys.js';
import type { PipelineDeps } from './deps.js';
import { errorName } from '../config/logger.js';

/**
 * What a door learns about a presented key before it reads the request: `valid` (runCall re-authenticates, and
 * admission re-checks in SQL, so a revoke in between still wins), `malformed` (not a vault key's shape),
 * `refused` (unknown, wrong secret, revoked or expired: runCall refuses it without reading any arguments) or
 * `unavailable` (the database could not say).
 */
export type PresentedKeyCheck = 'valid' | 'malformed' | 'refused' | 'unavailable';

/**
 * Authenticates a presented vault key through the pipeline's key cache (then the database), so a door can refuse a
 * caller with no valid key before it reads or parses a byte of the body.
 */
export async function checkPresentedKey(
  deps: PipelineDeps,
  presented: string | undefined,
): Promise<PresentedKeyCheck> {
  if (!presented || !parseVaultKey(presented)) return 'malformed';
  try {
    const auth = await deps.keys.identify(presented);
    if (!auth.ok || auth.key.revoked_at) return 'refused';
    const expires = auth.key.expires_at;
    return expires && expires.getTime() <= Date.now() ? 'refused' : 'valid';
  } catch (error) {
    deps.log.error('authentication query failed', { error: errorName(error) });
    return 'unavailable';
  }
}

/** What a door does with a presented vault key: serve it, or answer 401 or 429. */
export type VaultKeyCheck =
  | { verdict: 'valid' }
  /** The database could not be asked: the pipeline answers (audit_unavailable), as for any call. */
  | { verdict: 'undecided' }
  | { verdict: 'wrong'; malformed: boolean }
  | { verdict: 'throttled'; retryAfter: number };

/** The key cache's side the check needs: a cached answer (right or wrong), or a lookup. */
export interface KeyLookup {
  peek(presented: string): AuthResult | undefined;
  identify(presented: string): Promise<AuthResult>;
}

/**
 * The door's limit on wrong secrets from the caller's address (src/server/auth-throttle.ts), for one request:
 * whether the database may be asked now, and recording a wrong key (0: answer 401; else the Retry-After of a 429).
 */
export interface WrongKeyLimit {
  mayLookUp(): boolean;
  reject(reason: 'malformed' | 'wrong' | 'unchecked'): number;
}

/**
 * Checks a presented vault key under the door's limit: the cache first (a right key is served from any address, a
 * remembered wrong one costs no query), then the database when the address may still look up. A key that
 * exists is valid here even when revoked or expired: the pipeline refuses it with its own code and row.
 */
export async function checkVaultKey(
  keys: KeyLookup,
  presented: string,
  limit: WrongKeyLimit,
): Promise<VaultKeyCheck> {
  const refuse = (reason: 'malformed' | 'wrong' | 'unchecked'): VaultKeyCheck => {
    const retryAfter = limit.reject(reason);
    return retryAfter
      ? { verdict: 'throttled', retryAfter }
      : { verdict: 'wrong', malformed: reason === 'malformed' };
  };
  if (!parseVaultKey(presented)) return refuse('malformed');
  let auth = keys.peek(presented);
  if (!auth) {
    if (!limit.mayLookUp()) return refuse('unchecked');
    try {
      auth = await keys.identify(presented);
    } catch {
      return { verdict: 'undecided' };
    }
  }
  return auth.ok ? { verdict: 'valid' } : refuse('wrong');
}
