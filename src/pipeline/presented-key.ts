import type { AuthResult } from '../keys/authenticate.js';
import type { OAuthCaller } from '../keys/key-cache.js';
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

export type { OAuthCaller } from '../keys/key-cache.js';

/** What a door does with a verified OAuth caller: serve it under a handle, or refuse it (401). */
export type OAuthCallerCheck =
  | {
      verdict: 'valid';
      /** Present this as the request's key; release it when the request ends. */
      handle: string;
      release(): void;
    }
  | { verdict: 'refused'; code: 'key_invalid' | 'key_revoked' | 'key_expired'; keyId: string | null }
  /** Too many OAuth requests in flight on this process. */
  | { verdict: 'busy' };

/**
 * Finds the binding of a verified access token's identity (cached; admission re-checks the binding's row by id in
 * SQL, so a revoke wins over the cache) and registers the caller for one request. No binding, or a revoked or expired
 * one, is refused here with the reason logged. With the database unreachable the caller is served and the pipeline
 * answers (audit_unavailable), as for a vault key.
 */
export async function checkOAuthCaller(deps: PipelineDeps, caller: OAuthCaller): Promise<OAuthCallerCheck> {
  const who = { sub: caller.identity.subject, client_id: caller.claims.client_id };
  try {
    const auth = await deps.keys.identifyBinding(caller.identity);
    const expired = auth.ok && auth.key.expires_at !== null && auth.key.expires_at.getTime() <= Date.now();
    const code = !auth.ok
      ? 'key_invalid'
      : auth.key.revoked_at
        ? 'key_revoked'
        : expired
          ? 'key_expired'
          : undefined;
    if (code) {
      const keyId = auth.ok ? auth.key.id : null;
      deps.log.info('oauth token refused', {
        code,
        reason:
          code === 'key_invalid'
            ? 'no binding for this issuer, subject and client'
            : `binding ${code.slice(4)}`,
        key_id: keyId,
        ...who,
      });
      return { verdict: 'refused', code, keyId };
    }
  } catch (error) {
    deps.log.error('authentication query failed', { error: errorName(error) });
  }
  const handle = deps.keys.register(caller);
  if (!handle) return { verdict: 'busy' };
  return { verdict: 'valid', handle, release: () => deps.keys.release(handle) };
}
