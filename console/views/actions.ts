// The Recent operator actions panel: the last changes operators made (approve, deny, revoke, rotate, policy apply,
// vendor credentials, operators), newest first, one row each — when, who, what, on what, through which door — so
// "who revoked that key?" is answered where the operator looks. Re-rendered on every overview read; a table at
// desktop width, one card per action at phone width (console.css). Nothing is cut: long values wrap.
import { actionVerb, doorName } from '../../src/audit/action-words.js';
import { byId, h } from '../dom.js';
import { clock, fullTime, plural } from '../format.js';
import type { OperatorAction } from '../types.js';

/** What the server sends unless told otherwise (RECENT_ACTIONS in src/server/console/routes.ts). */
const SHOWN = 20;

/** `key:abc` → `key abc`, `credential:stripe/default` → `credential stripe/default`. */
const targetText = (target: string) => target.replace(/^([a-z_]+):/, '$1 ');

/** The detail that matters, in a few words: how many keys a revoke took, the version applied, the reason or note. */
function detailText(a: OperatorAction): string {
  const d = a.detail;
  const parts: string[] = [];
  if (Array.isArray(d.key_ids) && !(d.key_ids.length === 1 && a.target === `key:${String(d.key_ids[0])}`))
    parts.push(plural(d.key_ids.length, 'key'));
  if (typeof d.version === 'number') parts.push(`version ${d.version}`);
  if (typeof d.wire === 'string') parts.push(`tripwire ${d.wire}`);
  if (typeof d.reason === 'string') parts.push(d.reason);
  if (typeof d.note === 'string') parts.push(d.note);
  return parts.join(' · ');
}

/** Today's actions by their time; older ones with their date too. */
function when(iso: string): string {
  const d = new Date(iso);
  if (d.toDateString() === new Date().toDateString()) return clock(iso).slice(0, 8);
  return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${clock(iso).slice(0, 5)}`;
}

function row(a: OperatorAction): HTMLTableRowElement {
  const detail = detailText(a);
  return h(
    'tr',
    { 'data-action-id': a.id, 'data-action': a.action },
    h('td', { class: 'c-when' }, h('time', { datetime: a.ts, title: fullTime(a.ts), text: when(a.ts) })),
    h('td', { class: 'c-by', text: a.actor }),
    h('td', { class: 'c-what', text: actionVerb(a.action) }),
    h(
      'td',
      { class: 'c-target' },
      h('span', { class: 'target', text: targetText(a.target) }),
      detail ? h('span', { class: 'sub', text: detail }) : null,
    ),
    h('td', { class: 'c-via', 'data-label': 'via', text: doorName(a.via) }),
  );
}

export interface ActionsView {
  render(actions: OperatorAction[]): void;
}

export function actionsView(): ActionsView {
  const tbody = byId('actions-table', HTMLTableElement).tBodies[0];
  const empty = byId('actions-empty', HTMLElement);
  const count = byId('actions-count', HTMLElement);
  let last = '';
  return {
    render(actions) {
      // Re-rendered only when the list (or the day, which decides how times read) changed.
      const seen = JSON.stringify([new Date().toDateString(), ...actions.map((a) => a.id)]);
      if (!tbody || seen === last) return;
      last = seen;
      tbody.replaceChildren(...actions.map(row));
      empty.hidden = actions.length > 0;
      count.textContent = actions.length >= SHOWN ? `(the last ${SHOWN})` : '';
    },
  };
}
