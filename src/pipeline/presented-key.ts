import { parseVaultKey } from '../keys/vault-keys.js';
import type { PipelineDeps } from './deps.js';
import { errorName } from './failure.js';

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
