// A call's details in a dialog: every operator column of its audit row, values in full (the table cuts them), and
// the revoke buttons for the call's key, run and agent (each then asks for a reason in the confirmation).
import { byId, h } from '../dom.js';
import { fullTime, money, usd } from '../format.js';
import type { AuditRow } from '../types.js';
import { revokeChoice, type AskRevoke, type RevokeKind } from './revoke.js';

const FIELDS: [keyof AuditRow, string][] = [
  ['id', 'Audit id'],
  ['ts', 'Time'],
  ['agent', 'Agent'],
  ['run_id', 'Run'],
  ['key_id', 'Key'],
  ['policy', 'Policy'],
  ['policy_version', 'Policy version'],
  ['tool', 'Tool'],
  ['decision', 'Decision'],
  ['reason', 'Reason'],
  ['outcome', 'Outcome'],
  ['cost_status', 'Cost status'],
  ['cost_micros', 'Cost'],
  ['reserved_micros', 'Reserved'],
  ['amount', 'Amount'],
  ['vendor_object_id', 'Vendor object'],
  ['replay_of', 'Replay of'],
  ['latency_ms', 'Latency'],
  ['sandbox', 'Sandbox'],
];

function value(r: AuditRow, k: keyof AuditRow): string {
  const v = r[k];
  if (v === null || v === '') return '–';
  if (k === 'ts') return fullTime(String(v));
  if (typeof v === 'number' && (k === 'cost_micros' || k === 'reserved_micros'))
    return `${usd(v)} (${v} micro-USD)`;
  // The vendor's own amount as money, and exactly as the vendor counts it (minor units of its currency).
  if (k === 'amount' && typeof v === 'number')
    return r.currency
      ? `${money(v, r.currency)} (${v} ${r.currency.toUpperCase()} minor units)`
      : `${v} (minor units)`;
  if (k === 'latency_ms') return `${String(v)} ms`;
  return String(v);
}

const KINDS: [RevokeKind, string][] = [
  ['key', 'Revoke key'],
  ['run', 'Revoke run'],
  ['agent', 'Revoke agent'],
];

/** Wires the details dialog; answers the function that opens it for a row. */
export function detailsDialog(ask: AskRevoke): (r: AuditRow) => void {
  const dialog = byId('details', HTMLDialogElement);
  return (r) => {
    const items = FIELDS.flatMap(([k, label]) => [
      h('dt', { text: label }),
      h('dd', { class: k.endsWith('id') ? 'mono' : '', text: value(r, k) }),
    ]);
    byId('details-body', HTMLElement).replaceChildren(...items);
    const buttons = KINDS.flatMap(([kind, text]) => {
      const choice = revokeChoice(r, kind);
      if (!choice) return [];
      const open = () => {
        dialog.close();
        ask(choice.target, choice.question);
      };
      return [
        h(
          'button',
          { type: 'button', class: kind === 'key' ? 'danger' : 'quiet', 'data-revoke': kind, onclick: open },
          text,
        ),
      ];
    });
    byId('details-actions', HTMLElement).replaceChildren(...buttons);
    dialog.showModal();
  };
}
