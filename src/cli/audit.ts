import {
  AUDIT_COLUMNS,
  MAX_AUDIT_LIMIT,
  parseTime,
  queryAudit,
  TimeInputError,
  type AuditFilter,
  type AuditRow,
} from '../audit/query.js';
import { tailAudit } from '../audit/tail.js';
import { openDatabase } from '../db/database.js';
import { formatUsd } from '../policy/money.js';
import { CliError, EXIT, command, table, type CommandGroup, type Context } from './command.js';

/** A `--since` / `--until` value as a Date; a bad one is a usage error naming the flag. */
export function timeFlag(value: string | undefined, flag: string): Date | undefined {
  if (value === undefined) return undefined;
  try {
    return parseTime(value, flag);
  } catch (error) {
    if (error instanceof TimeInputError) throw new CliError(error.message, EXIT.usage);
    throw error;
  }
}

function countFlag(value: string, flag: string, max: number): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > max)
    throw new CliError(`${flag} must be a whole number from 0 to ${max}, got '${value}'`, EXIT.usage);
  return n;
}

/** Dollars as written ("100", "0.30", "0.0083") to integer micro-USD, without float rounding. */
function usdFlag(value: string, flag: string): number {
  const m = /^(\d{1,12})(?:\.(\d{0,6}))?$/.exec(value.trim().replace(/^\$/, ''));
  if (!m) throw new CliError(`${flag} expects dollars such as 100 or 0.30, got '${value}'`, EXIT.usage);
  return Number(m[1]) * 1_000_000 + Number((m[2] ?? '').padEnd(6, '0'));
}

function decisionFlag(value: string | undefined): AuditFilter['decision'] {
  if (value === undefined || value === 'allowed' || value === 'denied') return value;
  throw new CliError(`--decision must be 'allowed' or 'denied', got '${value}'`, EXIT.usage);
}

/** What a row cost or holds: "$0.30", "$0.50 held" while only reserved, "-" for a call that cost nothing. */
function costText(r: AuditRow): string {
  if (r.reserved_micros > 0 && r.cost_micros === 0) return `${formatUsd(r.reserved_micros)} held`;
  if (r.reserved_micros > 0) return `${formatUsd(r.cost_micros)}+${formatUsd(r.reserved_micros)} held`;
  return r.cost_micros > 0 || r.decision === 'allowed' ? formatUsd(r.cost_micros) : '-';
}

function decisionText(r: AuditRow): string {
  return r.decision === 'denied' ? `denied:${r.reason ?? '?'}` : 'allowed';
}

/** One audit row as one terminal line (fixed widths, since tail cannot know the widths to come). */
export function formatAuditLine(r: AuditRow): string {
  const col = (v: string | null | undefined, w: number) => (v ?? '-').padEnd(w);
  return [
    r.ts.toISOString(),
    col(r.agent, 14),
    col(r.run_id, 12),
    col(r.tool, 14),
    col(decisionText(r), 30),
    col(r.outcome, 9),
    col(costText(r), 10),
    r.vendor_object_id ?? '-',
  ]
    .join('  ')
    .trimEnd();
}

/** JSON-safe row: dates as ISO strings, money as integer micros. */
function jsonRow(r: AuditRow): Record<string, unknown> {
  return { ...r, ts: r.ts.toISOString() };
}

function csvField(v: AuditRow[keyof AuditRow]): string {
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

const tail = command({
  name: 'tail',
  summary: 'Print the newest audit rows, oldest first; with -f keep printing new ones as they are written.',
  usage: 'audit tail [-f] [--agent A] [--run R] [--tool T] [--denied] [-n 20] [--json]',
  help: [
    '-f, --follow     keep printing new rows (from any process) until Ctrl-C',
    '--agent A        only this agent',
    '--run R          only this run id',
    '--tool T         only this tool, e.g. issue_refund',
    '--denied         only denied calls',
    '-n, --lines N    how many recent rows to print first (default 20; 0 with -f: only new ones)',
    '--json           one JSON object per line (NDJSON), money in micro-USD',
  ],
  options: {
    follow: { type: 'boolean', short: 'f' },
    agent: { type: 'string' },
    run: { type: 'string' },
    tool: { type: 'string' },
    denied: { type: 'boolean' },
    lines: { type: 'string', short: 'n', default: '20' },
    json: { type: 'boolean' },
  },
  async run(ctx, v) {
    const n = countFlag(v.lines, '-n', MAX_AUDIT_LIMIT);
    const filter: AuditFilter = {
      agent: v.agent,
      run: v.run,
      tool: v.tool,
      decision: v.denied ? 'denied' : undefined,
    };
    const print = v.json
      ? (r: AuditRow) => ctx.io.stdout(JSON.stringify(jsonRow(r)) + '\n')
      : (r: AuditRow) => ctx.io.stdout(formatAuditLine(r) + '\n');
    // Opening migrates (and starts the embedded server if needed); tail then uses its own connection.
    const handle = await openDatabase(ctx.config(), { poolMax: 2 });
    if (!v.follow) {
      try {
        const rows = n > 0 ? await queryAudit(handle.db, { ...filter, limit: n }) : [];
        rows.reverse().forEach(print);
      } finally {
        await handle.close();
      }
      return EXIT.ok;
    }
    const url = handle.url;
    await handle.close();
    await follow(ctx, url, filter, n, print);
    return EXIT.ok;
  },
});

/** Runs tailAudit until SIGINT/SIGTERM (or the reader of a pipe goes away). */
async function follow(
  ctx: Context,
  url: string,
  filter: AuditFilter,
  backlog: number,
  onRow: (r: AuditRow) => void,
): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const onPipeError = (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', onPipeError);
  try {
    await tailAudit({
      url,
      filter,
      backlog,
      onRow,
      onNotice: (m) => ctx.io.stderr(`leash audit tail: ${m}\n`),
      signal: stop.signal,
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.stdout.off('error', onPipeError);
  }
}

const FORMATS = ['table', 'json', 'csv'] as const;

const query = command({
  name: 'query',
  summary: 'Find audit rows by agent, run, key, tool, decision, time and amount (newest first).',
  usage:
    'audit query [--agent A] [--run R] [--key K] [--tool T] [--decision allowed|denied] [--since T] [--until T] [--min-usd D] [--limit N] [--format table|json|csv]',
  help: [
    '--agent A                   only this agent',
    '--run R                     only this run id',
    '--key K                     only this vault key id',
    '--tool T                    only this tool, e.g. issue_refund',
    '--decision allowed|denied   only allowed or only denied calls',
    '--since T                   from T: 2026-11-20T14:30:00Z, 2026-11-20 (UTC), or ago: 30m, 2h, 7d',
    '--until T                   before T (same forms as --since)',
    '--min-usd D                 only calls costing or holding at least D dollars, e.g. 100 or 0.30',
    `--limit N                   at most N rows (default 100, max ${MAX_AUDIT_LIMIT})`,
    '--format F                  table (default), json (an array) or csv (with a header row)',
  ],
  options: {
    agent: { type: 'string' },
    run: { type: 'string' },
    key: { type: 'string' },
    tool: { type: 'string' },
    decision: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    'min-usd': { type: 'string' },
    limit: { type: 'string', default: '100' },
    format: { type: 'string', default: 'table' },
  },
  async run(ctx, v) {
    const format = FORMATS.find((f) => f === v.format);
    if (!format)
      throw new CliError(`--format must be one of ${FORMATS.join(', ')}, got '${v.format}'`, EXIT.usage);
    const limit = countFlag(v.limit, '--limit', MAX_AUDIT_LIMIT);
    if (limit === 0) throw new CliError('--limit must be at least 1', EXIT.usage);
    const filter: AuditFilter = {
      agent: v.agent,
      run: v.run,
      keyId: v.key,
      tool: v.tool,
      decision: decisionFlag(v.decision),
      since: timeFlag(v.since, '--since'),
      until: timeFlag(v.until, '--until'),
      minUsdMicros: v['min-usd'] === undefined ? undefined : usdFlag(v['min-usd'], '--min-usd'),
      limit,
    };
    const handle = await openDatabase(ctx.config(), { poolMax: 2 });
    const rows = await queryAudit(handle.db, filter).finally(() => handle.close());
    if (format === 'json') ctx.json(rows.map(jsonRow));
    else if (format === 'csv') ctx.io.stdout(auditCsv(rows));
    else
      ctx.io.stdout(
        table(
          rows.map((r) => ({
            time: r.ts,
            agent: r.agent,
            run: r.run_id,
            tool: r.tool,
            decision: decisionText(r),
            outcome: r.outcome,
            cost: costText(r),
            object: r.vendor_object_id,
            id: r.id,
          })),
          ['time', 'agent', 'run', 'tool', 'decision', 'outcome', 'cost', 'object', 'id'],
        ),
      );
    return EXIT.ok;
  },
});

export const auditCommands: CommandGroup = {
  name: 'audit',
  commands: [tail, query],
};
