// Resuming for a door that may not read keys itself (the console): the key-ops resume, with a scope of the wrong shape
// answered as the field's error rather than thrown.
import type { Actor } from '../audit/operator-actions.js';
import type { Db } from '../db/database.js';
import { KeyError } from '../keys/vault-keys.js';
import type { Alerts } from './alerts.js';
import { operatorResume, pauseScope, type PauseChoice, type PauseView } from './key-ops.js';

/** Resumes the scope `choice` names as `by` (recorded, alerted); `error` names the field when its shape is wrong. */
export async function resumeChoice(
  db: Db,
  choice: PauseChoice,
  o: { by: Actor; alerts?: Alerts | undefined },
): Promise<{ ended: PauseView | null } | { error: string }> {
  try {
    return { ended: (await operatorResume(db, pauseScope(choice), o)) ?? null };
  } catch (error) {
    if (error instanceof KeyError) return { error: error.message };
    throw error;
  }
}
