// Audit rows as the CLI prints them: one terminal line that fits the width (tail), a JSON-safe object, RFC 4180 CSV,
// and the decision, outcome, cost and approval texts the query table shares.
import { AUDIT_COLUMNS, type AuditRow } from '../audit/query.js';
import { displayText } from '../audit/display-text.js';
import { formatUsd } from '../policy/money.js';
import { fitCells, joinCells, layoutColumns, paint, type ColumnSpec } from './output.js';

/**
 * What a row cost or has reserved against its caps: "$0.30", "$0.50 reserved" until it settles, "-" for a call
 * that cost nothing. ("Held" is a call waiting for a person: decisionText.)
 */
function costText(r: AuditRow): string {
  if (r.reserved_micros > 0 && r.cost_micros === 0) return `${formatUsd(r.reserved_micros)} reserved`;
  if (r.reserved_micros > 0) return `${formatUsd(r.cost_micros)}+${formatUsd(r.reserved_micros)} reserved`;
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

/** A time as every other time the CLI prints (2026-12-06T23:34:42.525Z), whatever form it was stored in. */
function isoTime(t: string | Date): string {
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toISOString();
}

/** Who approved or denied a held call (or the approval an admitted call used), when, and their note. */
export function approvalText(r: AuditRow): string | null {
  const a = r.approval;
  if (!a?.decided_by) return null;
  const verb = a.status === 'denied' ? 'denied' : 'approved';
  return `${verb} by ${a.decided_by}${a.decided_at ? ` at ${isoTime(a.decided_at)}` : ''}${a.note ? `: ${a.note}` : ''}`;
}

interface TailColumn extends ColumnSpec {
  /** The width lines are padded to (tail prints each row as it comes, so it cannot measure them). */
  width: number;
  /** The header over it ('' for the notes at the end of a line, which say what they are). */
  header: string;
  /** The cell's text for a row; `label` replaces the decision. */
  text: (r: AuditRow, label?: string) => string;
  /** May be cut with … on a line whose other cells pushed it past the width (names and free text, never ids or times). */
  lineCut?: boolean;
}

// Agent- and vendor-supplied text: hidden characters (a bidi override, an ESC) print as ⟨U+…⟩ markers.
const shown = (v: string | null | undefined) => displayText(v ?? '-');

/** The tail's columns, in line order; at a narrow width the highest priority numbers are left out first. */
const TAIL_COLUMNS: readonly TailColumn[] = [
  { name: 'ts', header: 'TS', width: 24, priority: 0, text: (r) => r.ts.toISOString() },
  { name: 'agent', header: 'AGENT', width: 14, priority: 1, lineCut: true, text: (r) => shown(r.agent) },
  { name: 'run_id', header: 'RUN_ID', width: 16, priority: 5, text: (r) => shown(r.run_id) },
  { name: 'tool', header: 'TOOL', width: 14, priority: 2, lineCut: true, text: (r) => shown(r.tool) },
  {
    name: 'decision',
    header: 'DECISION',
    width: 30,
    priority: 0,
    cut: true,
    min: 22,
    lineCut: true,
    text: (r, label) => displayText(label ?? decisionText(r)),
  },
  { name: 'outcome', header: 'OUTCOME', width: 9, priority: 4, text: (r) => outcomeText(r) },
  { name: 'cost', header: 'COST', width: 14, priority: 3, text: (r) => costText(r) },
  {
    name: 'vendor_object_id',
    header: 'VENDOR_OBJECT_ID',
    width: 36,
    priority: 6,
    text: (r) => shown(r.vendor_object_id),
  },
  {
    name: 'notes',
    header: '',
    width: 40,
    priority: 7,
    cut: true,
    lineCut: true,
    text: (r) =>
      [...(r.replay_of ? [`replay of ${r.replay_of}`] : []), displayText(approvalText(r) ?? '')]
        .join('  ')
        .trim(),
  },
];

/** The tail's columns for one width, chosen once: every line then fits it (or, with Infinity, holds everything). */
export interface TailLayout {
  columns: readonly TailColumn[];
  /** Names of the columns left out (--wide brings them back). */
  hidden: readonly string[];
  width: number;
}

/** The columns a tail shows in `width` characters (Infinity: all of them, as with --wide or a pipe). */
export function tailLayout(width: number): TailLayout {
  const {
    shown: indexes,
    widths,
    hidden,
  } = layoutColumns(
    TAIL_COLUMNS,
    TAIL_COLUMNS.map((c) => c.width),
    width,
  );
  const columns = indexes.flatMap((i) => {
    const c = TAIL_COLUMNS[i];
    return c ? [{ ...c, width: widths[i] ?? c.width }] : [];
  });
  return { columns, hidden, width };
}

const FULL = tailLayout(Infinity);

/** The column names over tail lines. */
export function tailHeader(layout: TailLayout = FULL): string {
  return joinCells(
    fitCells(
      layout.columns.map((c) => ({ text: c.header, width: c.width })),
      Infinity,
    ),
  );
}

/**
 * One audit row as one terminal line in `layout`'s columns: padded to their widths, and cut to the layout's width
 * where a long name or note would push it past (ids and times never). `label` replaces the decision column:
 * `tail -f` prints a row again as `settled` (or `updated`) when it settles. With `colour`, the decision is red
 * (denied), yellow (held) or green.
 */
export function formatAuditLine(
  r: AuditRow,
  label?: string,
  layout: TailLayout = FULL,
  colour = false,
): string {
  const cells = fitCells(
    layout.columns.map((c) => ({ text: c.text(r, label), width: c.width, cut: c.lineCut ?? false })),
    layout.width,
  );
  const at = layout.columns.findIndex((c) => c.name === 'decision');
  const cell = cells[at];
  if (colour && label === undefined && cell !== undefined) {
    const tint = r.decision === 'denied' ? 'red' : r.decision === 'held' ? 'yellow' : 'green';
    const text = cell.trimEnd();
    cells[at] = paint(text, tint, true) + cell.slice(text.length);
  }
  return joinCells(cells);
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
