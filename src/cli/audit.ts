// `leash audit tail` and `leash audit query`: their flags and the commands (rows as text: audit-format.ts).
import {
  MAX_AUDIT_LIMIT,
  OUTCOMES,
  parseTime,
  queryAudit,
  TimeInputError,
  type AuditFilter,
  type AuditRow,
} from '../audit/query.js';
import { displayText, displayValue } from '../audit/display-text.js';
import { watchAudit, type AuditEvent } from '../audit/watch.js';
import { openDatabase, type Db } from '../db/database.js';
import { formatUsd, parseUsd, UsdInputError } from '../policy/money.js';
import {
  approvalText,
  auditCsv,
  decisionText,
  formatAuditLine,
  jsonRow,
  outcomeText,
  tailHeader,
  tailLayout,
} from './audit-format.js';
import { CliError, EXIT, command, type CommandGroup, type Context } from './command.js';
import {
  ACTION_QUERY_HELP,
  ACTION_QUERY_OPTIONS,
  ACTION_TAIL_HELP,
  ACTION_TAIL_OPTIONS,
  actionsQuery,
  actionsTail,
} from './operator-actions.js';
import { hiddenNote, outputWidth, paint, type ColumnSpec } from './output.js';
import { retentionCommands } from './audit-retention.js';

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

/** Dollars as a flag to integer micro-USD, parsed as everywhere else (parseUsd); a bad one is a usage error. */
function usdFlag(value: string, flag: string): number {
  try {
    return parseUsd(value, flag);
  } catch (error) {
    if (error instanceof UsdInputError) throw new CliError(error.message, EXIT.usage);
    throw error;
  }
}

function decisionFlag(value: string | undefined): AuditFilter['decision'] {
  if (value === undefined || value === 'allowed' || value === 'denied' || value === 'held') return value;
  // What a call's vendor did is its outcome, not the decision to make it.
  const hint = OUTCOMES.some((o) => o === value)
    ? `; for calls whose outcome is ${value}, use --outcome ${value}`
    : '';
  throw new CliError(`--decision must be 'allowed', 'denied' or 'held', got '${value}'${hint}`, EXIT.usage);
}

function outcomeFlag(value: string | undefined): AuditFilter['outcome'] {
  if (value === undefined) return undefined;
  const outcome = OUTCOMES.find((o) => o === value);
  if (outcome) return outcome;
  throw new CliError(`--outcome must be one of ${OUTCOMES.join(', ')}, got '${value}'`, EXIT.usage);
}

const tail = command({
  name: 'tail',
  summary: 'Print the newest audit rows, oldest first; with -f keep printing new ones as they are written.',
  usage:
    'audit tail [-f] [--agent A] [--run R] [--tool T] [--denied] [-n 20] [--json] [--wide] [--operator-actions [--operator NAME]]',
  help: [
    '-f, --follow     keep printing new rows (from any process) until Ctrl-C, and print a row again',
    '                 (marked settled, or "event":"settle" in JSON) when its outcome or cost settles',
    '--agent A        only this agent',
    '--run R          only this run id',
    '--tool T         only this tool, e.g. issue_refund',
    '--denied         only denied calls',
    '-n, --lines N    how many recent rows to print first (default 20; 0 with -f: only new ones)',
    '--json           one JSON object per line (NDJSON), money in micro-USD',
    '--wide           every column, however long the lines (otherwise one line per row that fits the terminal,',
    '                 leaving out run id, outcome, cost and vendor id as it narrows: a line under the rows says which)',
    ...ACTION_TAIL_HELP,
  ],
  options: {
    follow: { type: 'boolean', short: 'f' },
    agent: { type: 'string' },
    run: { type: 'string' },
    tool: { type: 'string' },
    denied: { type: 'boolean' },
    lines: { type: 'string', short: 'n', default: '20' },
    json: { type: 'boolean' },
    wide: { type: 'boolean' },
    ...ACTION_TAIL_OPTIONS,
  },
  async run(ctx, v) {
    const n = countFlag(v.lines, '-n', MAX_AUDIT_LIMIT);
    if (v['operator-actions'] || v.operator !== undefined) return actionsTail(ctx, v, n);
    const filter: AuditFilter = {
      agent: v.agent,
      run: v.run,
      tool: v.tool,
      decision: v.denied ? 'denied' : undefined,
    };
    const json = v.json || ctx.jsonMode;
    // Columns chosen once for the terminal's width: every line fits it, whatever rows come.
    const layout = tailLayout(outputWidth(ctx.io, Boolean(v.wide)));
    const print = json
      ? (r: AuditRow) => ctx.io.stdout(JSON.stringify(jsonRow(r)) + '\n')
      : (r: AuditRow) => ctx.io.stdout(formatAuditLine(r, undefined, layout, ctx.colour) + '\n');
    // Said once, under the first rows, like a table's.
    const sayHidden = () => {
      if (!json && layout.hidden.length)
        ctx.io.stdout(paint(hiddenNote(layout.hidden, layout.width), 'dim', ctx.colour) + '\n');
    };
    // Opening migrates (and starts the embedded server if needed).
    const handle = await openDatabase(ctx.config(), { poolMax: 2 });
    try {
      // The header only once the database has answered: a failure leaves stdout empty.
      const header = () => {
        if (!json) ctx.io.stdout(paint(tailHeader(layout), 'bold', ctx.colour) + '\n');
      };
      if (!v.follow) {
        const rows = n > 0 ? await queryAudit(handle.db, { ...filter, limit: n }) : [];
        header();
        rows.reverse().forEach(print);
        sayHidden();
        return EXIT.ok;
      }
      const onEvent = (e: AuditEvent) => {
        if (e.kind === 'row') return print(e.row);
        const label = e.row.outcome === 'pending' || e.row.outcome === 'unknown' ? 'updated' : 'settled';
        ctx.io.stdout(
          json
            ? JSON.stringify({ event: 'settle', ...jsonRow(e.row) }) + '\n'
            : formatAuditLine(e.row, label, layout) + '\n',
        );
      };
      header();
      await follow(ctx, handle.db, filter, n, onEvent, sayHidden);
      return EXIT.ok;
    } finally {
      await handle.close();
    }
  },
});

/** Runs watchAudit until SIGINT/SIGTERM (or the reader of a pipe goes away). */
async function follow(
  ctx: Context,
  db: Db,
  filter: AuditFilter,
  backlog: number,
  onEvent: (e: AuditEvent) => void,
  onBacklog: () => void,
): Promise<void> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const onPipeError = (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.stdout.on('error', onPipeError);
  const watch = watchAudit(db, filter, onEvent, {
    backlog,
    onNotice: (m) => ctx.io.stderr(`leash audit tail: ${m}\n`),
  });
  try {
    await watch.ready;
    onBacklog();
    await new Promise<void>((resolve) => {
      if (stop.signal.aborted) return resolve();
      stop.signal.addEventListener('abort', () => resolve(), { once: true });
    });
  } finally {
    await watch.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.stdout.off('error', onPipeError);
  }
}

const FORMATS = ['table', 'json', 'csv'] as const;

/**
 * The query table's columns. At 80 columns: ts, decision and the row id (whole: it names a held call's approval
 * request and what `reconcile --settle` takes); tool, agent, cost, … join them as the terminal widens.
 */
const QUERY_COLUMNS: readonly ColumnSpec[] = [
  { name: 'ts', priority: 0 },
  { name: 'agent', priority: 2 },
  { name: 'run_id', priority: 6 },
  { name: 'tool', priority: 1 },
  { name: 'decision', priority: 0, cut: true, min: 22 },
  { name: 'outcome', priority: 4 },
  { name: 'cost', priority: 3 },
  { name: 'reserved', priority: 5 },
  { name: 'vendor_object_id', priority: 7 },
  { name: 'id', priority: 0 },
  { name: 'replay_of', priority: 8 },
  { name: 'approval', priority: 9, cut: true },
];

const query = command({
  name: 'query',
  summary: 'Find audit rows by agent, run, key, tool, decision, time and amount (newest first).',
  usage:
    'audit query [--agent A] [--run R] [--key K] [--tool T] [--decision allowed|denied|held] [--outcome O] [--since T] [--until T] [--min-usd D] [--limit N] [--format table|json|csv] [--json] [--wide] [--operator-actions [--operator NAME] [--action A] [--target T]]',
  help: [
    '--agent A                   only this agent',
    '--run R                     only this run id',
    '--key K                     only this vault key id',
    '--tool T                    only this tool, e.g. issue_refund',
    '--decision allowed|denied|held  only allowed, denied, or held (waiting for a person) calls',
    '--outcome O                 only calls whose outcome is O: succeeded, failed, pending, unknown (the vendor may',
    '                            have acted; reconcile settles it) or none; e.g. --outcome unknown --until 15m',
    '--since T                   from T: 2026-11-20T14:30:00Z, 2026-11-20 (UTC), or ago: 30m, 2h, 7d',
    '--until T                   before T (same forms as --since)',
    '--min-usd D                 only calls costing or reserving at least D dollars, e.g. 100 or 0.30',
    `--limit N                   at most N rows (default 100, max ${MAX_AUDIT_LIMIT})`,
    '--format F                  table (default), json (an array; same as --json) or csv (with a header row)',
    '--wide                      every column (otherwise columns are left out as the terminal narrows, from the',
    '                            approval and vendor id to the agent; ts, id and decision always show, ids whole)',
    ...ACTION_QUERY_HELP,
  ],
  options: {
    agent: { type: 'string' },
    run: { type: 'string' },
    key: { type: 'string' },
    tool: { type: 'string' },
    decision: { type: 'string' },
    outcome: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    'min-usd': { type: 'string' },
    limit: { type: 'string', default: '100' },
    format: { type: 'string', default: 'table' },
    ...ACTION_QUERY_OPTIONS,
  },
  async run(ctx, v) {
    if (ctx.jsonMode && v.format !== 'table' && v.format !== 'json')
      throw new CliError(`--json and --format ${v.format} disagree; give one`, EXIT.usage);
    const format = ctx.jsonMode ? 'json' : FORMATS.find((f) => f === v.format);
    if (!format)
      throw new CliError(`--format must be one of ${FORMATS.join(', ')}, got '${v.format}'`, EXIT.usage);
    const limit = countFlag(v.limit, '--limit', MAX_AUDIT_LIMIT);
    if (limit === 0) throw new CliError('--limit must be at least 1', EXIT.usage);
    if (v['operator-actions'] || (v.operator ?? v.action ?? v.target) !== undefined)
      return actionsQuery(
        ctx,
        v,
        { since: timeFlag(v.since, '--since'), until: timeFlag(v.until, '--until') },
        limit,
        format,
      );
    const filter: AuditFilter = {
      agent: v.agent,
      run: v.run,
      keyId: v.key,
      tool: v.tool,
      decision: decisionFlag(v.decision),
      outcome: outcomeFlag(v.outcome),
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
      ctx.table(
        rows.map((r) => ({
          ts: r.ts,
          // Agent- and vendor-supplied text as markers where it hides characters (JSON and CSV keep it raw).
          agent: displayValue(r.agent),
          run_id: displayValue(r.run_id),
          tool: displayValue(r.tool),
          decision: displayText(decisionText(r)),
          outcome: outcomeText(r),
          cost: r.cost_micros > 0 || r.decision === 'allowed' ? formatUsd(r.cost_micros) : '-',
          reserved: r.reserved_micros > 0 ? formatUsd(r.reserved_micros) : '-',
          vendor_object_id: displayValue(r.vendor_object_id),
          id: r.id,
          replay_of: r.replay_of,
          approval: displayValue(approvalText(r)),
        })),
        QUERY_COLUMNS.filter(
          (c) =>
            // The row a replay repeats (and that counts its cost), only when some row is one.
            (c.name !== 'replay_of' || rows.some((r) => r.replay_of)) &&
            // Who approved or denied a held call, only when some row has one.
            (c.name !== 'approval' || rows.some((r) => approvalText(r))),
        ),
        (column, text) =>
          column !== 'decision'
            ? undefined
            : text.startsWith('denied')
              ? 'red'
              : text.startsWith('held')
                ? 'yellow'
                : 'green',
      );
    return EXIT.ok;
  },
});

export const auditCommands: CommandGroup = {
  name: 'audit',
  commands: [tail, query, ...retentionCommands],
};
