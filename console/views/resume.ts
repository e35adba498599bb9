// Resuming a paused key from the console: the agents view shows a paused key with a Paused badge, why (the wire that
// tripped with its figure and limit, or the operator who paused it and their reason) and a Resume button; the button
// opens one confirmation naming what will be resumed (the key, or the run, agent or policy whose pause stops it),
// then the resume goes with the session's CSRF token. Cancel just closes the dialog.
import { resume, SignedOut } from '../api.js';
import { byId, setText } from '../dom.js';
import { toast } from '../notify.js';
import type { Pause, ResumeTarget } from '../types.js';

/** Asks the operator to confirm resuming a pause, saying what it will do. */
export type AskResume = (pause: Pause) => void;

const TARGET: Readonly<Record<Pause['scope_kind'], (id: string) => ResumeTarget>> = {
  key: (id) => ({ key_id: id }),
  run: (id) => ({ run_id: id }),
  agent: (id) => ({ agent: id }),
  policy: (id) => ({ policy: id }),
};

/** "calls_per_minute" → "calls/min", "spend_usd_per_10m" → "spend_usd/10m". */
const metricText = (metric: string) =>
  metric
    .replace(/_per_/, '/')
    .replace(/\/minute$/, '/min')
    .replace(/\/hour$/, '/h');

/** What stops the key: "tripwire burst: 3 calls/min > 2" or "paused by rosa: incident 7". */
export function pauseReason(p: Pause): string {
  if (p.wire) {
    const figure = [p.figure ?? '?', p.metric ? metricText(p.metric) : null].filter((x) => x !== null);
    return `tripwire ${p.wire}: ${figure.join(' ')} > ${p.limit ?? '?'}`;
  }
  return `paused by ${p.paused_by}${p.reason ? `: ${p.reason}` : ''}`;
}

/** The scope a pause names, as words: "key abc", "run \"r1\"", "agent \"bot\"", "policy \"mail\"". */
export const scopeText = (p: Pause): string =>
  p.scope_kind === 'key' ? `key ${p.scope}` : `${p.scope_kind} "${p.scope}"`;

/** The confirmation's question: what resumes, and that every key the pause stops is let through. */
export function resumeQuestion(p: Pause): string {
  return p.scope_kind === 'key'
    ? `Resume key ${p.scope}? Its next call is admitted and its tripwires count afresh.`
    : `Resume ${scopeText(p)}? The next calls of every key of it are admitted and its tripwires count afresh.`;
}

/** Wires the dialog; answers the function that opens it. `resumed` runs after a resume went through. */
export function resumeDialog(resumed: () => void): AskResume {
  const dialog = byId('resume-confirm', HTMLDialogElement);
  const error = byId('resume-error', HTMLElement);
  const button = byId('resume-go', HTMLButtonElement);
  let pending: Pause | undefined;

  async function submit(p: Pause) {
    button.disabled = true;
    try {
      const done = await resume(TARGET[p.scope_kind](p.scope));
      dialog.close();
      toast(done ? `Resumed ${scopeText(p)}.` : `Nothing to resume: ${scopeText(p)} is not paused.`);
      pending = undefined;
      resumed();
    } catch (e) {
      if (e instanceof SignedOut) return;
      setText(error, `Not resumed: ${e instanceof Error ? e.message : String(e)}`);
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  byId('resume-form', HTMLFormElement).addEventListener('submit', (e) => {
    const by = e.submitter instanceof HTMLButtonElement ? e.submitter.value : '';
    if (by !== 'resume' || !pending) return; // Cancel closes the dialog
    e.preventDefault();
    void submit(pending);
  });

  return (p) => {
    pending = p;
    setText(byId('resume-text', HTMLElement), resumeQuestion(p));
    error.hidden = true;
    dialog.showModal();
  };
}
