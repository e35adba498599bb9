// Calls whose outcome stayed unknown past LEASH_UNKNOWN_ALERT_AGE: a count above the spend panel, as the alert says.
import { byId, h, setText } from '../dom.js';
import { plural } from '../format.js';
import type { UnknownOutcomes } from '../types.js';

export function renderUnknown(u: UnknownOutcomes): void {
  let el = document.getElementById('unknown-outcomes');
  if (!el) {
    el = h('p', { id: 'unknown-outcomes', class: 'bar-note', role: 'status' });
    byId('spend', HTMLElement).before(el);
  }
  el.hidden = !u.count;
  if (!u.count) return;
  const minutes = Math.round(u.older_than_seconds / 60);
  setText(
    el,
    `${plural(u.count, 'call')} with an unknown outcome for over ${minutes} min, their money still reserved ` +
      `(oldest: audit id ${u.audit_ids[0] ?? '–'}). Run leash reconcile; ` +
      'leash audit query --outcome unknown lists them.',
  );
}
