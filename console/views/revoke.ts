// Revoking from the console: one confirmation dialog (what will be revoked, an optional reason), then the revoke
// with the session's CSRF token. Cancel just closes the dialog. The agents view and a call's details offer the
// same three targets (its key, its run, its agent), each two clicks from done: the button, then Revoke.
import { revoke, SignedOut } from '../api.js';
import { byId, setText } from '../dom.js';
import { plural } from '../format.js';
import { toast } from '../notify.js';
import type { RevokeTarget } from '../types.js';

/** Asks the operator to confirm a revoke, saying what it will do. */
export type AskRevoke = (target: RevokeTarget, question: string) => void;

/** Whose key, run and agent a revoke button names (an agents view row, or a call's audit row). */
export interface RevokeSubject {
  key_id: string | null;
  agent: string | null;
  run_id: string | null;
}

export type RevokeKind = 'key' | 'run' | 'agent';

/** The target and the confirmation's question for revoking `subject`'s key, run or agent; null when it has none. */
export function revokeChoice(
  s: RevokeSubject,
  kind: RevokeKind,
): { target: RevokeTarget; question: string } | null {
  const run = s.run_id ? `, run ${s.run_id}` : '';
  if (kind === 'key')
    return s.key_id
      ? {
          target: { key_id: s.key_id },
          question: `Revoke key ${s.key_id} (agent ${s.agent ?? '–'}${run})? Its next call is refused.`,
        }
      : null;
  if (kind === 'run')
    return s.run_id
      ? {
          target: { run_id: s.run_id },
          question: `Revoke every active key of run "${s.run_id}"? Their next call is refused.`,
        }
      : null;
  return s.agent
    ? {
        target: { agent: s.agent },
        question: `Revoke every active key of agent "${s.agent}"? Their next call is refused.`,
      }
    : null;
}

/** Wires the dialog; answers the function that opens it. `revoked` runs after a revoke went through. */
export function revokeDialog(revoked: () => void): AskRevoke {
  const dialog = byId('confirm', HTMLDialogElement);
  const reason = byId('confirm-reason', HTMLInputElement);
  const error = byId('confirm-error', HTMLElement);
  const button = byId('confirm-revoke', HTMLButtonElement);
  let pending: RevokeTarget | undefined;

  async function submit(target: RevokeTarget) {
    button.disabled = true;
    try {
      const ids = await revoke(target, reason.value.trim());
      dialog.close();
      toast(
        ids.length
          ? `Revoked ${plural(ids.length, 'key')}.`
          : 'Nothing to revoke: already revoked or expired.',
      );
      pending = undefined;
      revoked();
    } catch (e) {
      if (e instanceof SignedOut) return;
      setText(error, `Not revoked: ${e instanceof Error ? e.message : String(e)}`);
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  byId('confirm-form', HTMLFormElement).addEventListener('submit', (e) => {
    const by = e.submitter instanceof HTMLButtonElement ? e.submitter.value : '';
    if (by !== 'revoke' || !pending) return; // Cancel closes the dialog
    e.preventDefault();
    void submit(pending);
  });

  return (target, question) => {
    pending = target;
    setText(byId('confirm-text', HTMLElement), question);
    reason.value = '';
    error.hidden = true;
    dialog.showModal();
  };
}
