// A call's details in a dialog: every operator column of its audit row, values in full (the table cuts them).
import { byId, h } from '../dom.js';
import { fullTime, usd } from '../format.js';
import type { AuditRow } from '../types.js';

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
  ['currency', 'Currency'],
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
  if (k === 'latency_ms') return `${String(v)} ms`;
  return String(v);
}

export function showDetails(r: AuditRow): void {
  const items = FIELDS.flatMap(([k, label]) => [
    h('dt', { text: label }),
    h('dd', { class: k.endsWith('id') ? 'mono' : '', text: value(r, k) }),
  ]);
  byId('details-body', HTMLElement).replaceChildren(...items);
  byId('details', HTMLDialogElement).showModal();
}
