// The operator's key operations, shared by the admin API and the console: list keys, revoke and alert.
import type { Db } from '../db/database.js';
import { listKeys, revokeKeys, type KeyRow, type RevokeTarget } from '../keys/vault-keys.js';
import type { Alerts } from './alerts.js';

/** What an operator names to revoke: exactly one of a key id, an agent or a run (checked by each door's schema). */
export interface RevokeChoice {
  key_id?: string | undefined;
  agent?: string | undefined;
  run_id?: string | undefined;
}

/** Which keys a filter lists (newest first, at most 1000). */
export interface KeyFilter {
  agent?: string;
  runId?: string;
  active?: boolean;
}

/** The keys an operator sees: `GET /admin/keys`, the console's Keys panel. */
export function operatorKeys(db: Db, filter: KeyFilter = {}): Promise<KeyRow[]> {
  return listKeys(db, filter);
}

/** The revoke target a door's body names. */
export function revokeTarget(choice: RevokeChoice): RevokeTarget {
  return choice.key_id
    ? { id: choice.key_id }
    : choice.agent
      ? { agent: choice.agent }
      : { runId: choice.run_id ?? '' };
}

/** Revokes a key, an agent or a run for an operator and alerts `key_revoked` (naming the door); returns the ids. */
export async function operatorRevoke(
  db: Db,
  target: RevokeTarget,
  o: { reason: string; by: string; alerts?: Alerts | undefined },
): Promise<string[]> {
  const revoked = await revokeKeys(db, target, o.reason);
  if (revoked.length) o.alerts?.notify({ type: 'key_revoked', key_ids: revoked, by: o.by, reason: o.reason });
  return revoked;
}
