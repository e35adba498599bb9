// Revoking from the console: one confirmation dialog (what will be revoked, an optional reason), then the revoke
// with the session's CSRF token. Cancel just closes the dialog.
import { revoke, SignedOut } from '../api.js';
import { byId, setText } from '../dom.js';
import { plural } from '../format.js';
import { toast } from '../notify.js';
import type { RevokeTarget } from '../types.js';
import type { AskRevoke } from './keys.js';

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
