// Audit rows as the CLI prints them: one fixed-width terminal line (tail), a JSON-safe object, RFC 4180 CSV, and
// the decision, outcome, cost and approval texts the query table shares.
import { AUDIT_COLUMNS, type AuditRow } from '../audit/query.js';
import { displayText } from '../audit/display-text.js';
import { formatUsd } from '../policy/money.js';
import { paint } from './output.js';

/** What a row cost or holds: "$0.30", "$0.50 held" while only reserved, "-" for a call that cost nothing. */
function costText(r: AuditRow): string {
  if (r.reserved_micros > 0 && r.cost_micros === 0) return `${formatUsd(r.reserved_micros)} held`;
  if (r.reserved_micros > 0) return `${formatUsd(r.cost_micros)}+${formatUsd(r.reserved_micros)} held`;
  return r.cost_micros > 0 || r.decision === 'allowed' ? formatUsd(r.cost_micros) : '-';
}

export function decisionText(r: AuditRow): string {
  if (r.decision === 'held') return `held:${r.approval?.status ?? 'pending'}`;
  return r.decision === 'denied' ? `denied:${r.reason ?? '?'}` : 'allowed';
}

/** The outcome as shown: a replay (the vendor repeated an earlier call's answer; $0 here) says so. */
export function outcomeText(r: AuditRow): string {
  return r.replay_of ? 'replay' : r.outcome;
}

/** Who approved or denied a held call (or the approval an admitted call used), when, and their note. */
export function approvalText(r: AuditRow): string | null {
  const a = r.approval;
  if (!a?.decided_by) return null;
  const verb = a.status === 'denied' ? 'denied' : 'approved';
  return `${verb} by ${a.decided_by}${a.decided_at ? ` at ${a.decided_at}` : ''}${a.note ? `: ${a.note}` : ''}`;
}

/**
 * One audit row as one terminal line (fixed widths, since tail cannot know the widths to come). `label`
 * replaces the decision column: `tail -f` prints a row again as `settled` (or `updated`) when it settles.
 */
export function formatAuditLine(r: AuditRow, label?: string): string {
  // Agent- and vendor-supplied text: hidden characters (a bidi override, an ESC) print as ⟨U+…⟩ markers.
  const col = (v: string | null | undefined, w: number) => displayText(v ?? '-').padEnd(w);
  return [
    r.ts.toISOString(),
    col(r.agent, 14),
    col(r.run_id, 12),
    col(r.tool, 14),
    col(label ?? decisionText(r), 30),
    col(outcomeText(r), 9),
    col(costText(r), 10),
    displayText(r.vendor_object_id ?? '-'),
    ...(r.replay_of ? [`replay of ${r.replay_of}`] : []),
    displayText(approvalText(r) ?? ''),
  ]
    .join('  ')
    .trimEnd();
}

/** The column names over `tail` lines, in formatAuditLine's widths. */
export const AUDIT_LINE_HEADER = [
  'TS'.padEnd(24),
  'AGENT'.padEnd(14),
  'RUN_ID'.padEnd(12),
  'TOOL'.padEnd(14),
  'DECISION'.padEnd(30),
  'OUTCOME'.padEnd(9),
  'COST'.padEnd(10),
  'VENDOR_OBJECT_ID',
].join('  ');

/** A tail line with its decision in red (denied) or green (allowed), when colour is on. */
export function colourLine(line: string, r: AuditRow, on: boolean): string {
  const text = displayText(decisionText(r));
  const colour = r.decision === 'denied' ? 'red' : r.decision === 'held' ? 'yellow' : 'green';
  return on ? line.replace(text, paint(text, colour, true)) : line;
}

/** JSON-safe row: dates as ISO strings, money as integer micros. */
export function jsonRow(r: AuditRow): Record<string, unknown> {
  return { ...r, ts: r.ts.toISOString() };
}

function csvField(v: AuditRow[(typeof AUDIT_COLUMNS)[number]]): string {
  let s = v === null ? '' : v instanceof Date ? v.toISOString() : String(v);
  // Text a spreadsheet would run as a formula (agent and run names are operator-chosen) is defused.
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** RFC 4180 CSV: a header row, CRLF line ends, fields with quotes, commas or line breaks quoted. */
export function auditCsv(rows: AuditRow[]): string {
  const lines = [AUDIT_COLUMNS.join(',')];
  for (const r of rows) lines.push(AUDIT_COLUMNS.map((c) => csvField(r[c])).join(','));
  return lines.join('\r\n') + '\r\n';
}
