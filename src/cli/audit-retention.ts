// `leash audit export`, `leash audit prune` and `leash audit partitions`: retention by whole monthly partitions.
import { once } from 'node:events';
import { link, open, rm } from 'node:fs/promises';
import { EXPORT_FORMATS, exportAudit, recordExport, type ExportSummary } from '../audit/export.js';
import { listAuditPartitions, type AuditPartition } from '../audit/partitions.js';
import { dropPartitions, planPrune, PruneRefused, type PrunePlan } from '../audit/prune.js';
import { BY_HELP, BY_OPTION, cliActor } from './acting.js';
import { parseTime, TimeInputError } from '../audit/query.js';
import { CliError, EXIT, command, type Context } from './command.js';
import { withDb } from './with-db.js';

const MAX_PATH = 4_096;

/** A time flag as a Date; a bad one is a usage error naming the flag. */
function timeFlag(value: string | undefined, flag: string): Date | undefined {
  if (value === undefined) return undefined;
  try {
    return parseTime(value, flag);
  } catch (error) {
    if (error instanceof TimeInputError) throw new CliError(error.message, EXIT.usage);
    throw error;
  }
}

function beforeFlag(value: string | undefined): Date {
  const before = timeFlag(value, '--before');
  if (!before) throw new CliError('--before is required, e.g. --before 2026-06-01 (UTC)', EXIT.usage);
  return before;
}

const day = (d: Date | undefined) => (d ? d.toISOString().slice(0, 10) : '-');

function sizeText(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i] ?? 'B'}`;
}

const rowsText = (n: number | null) => (n === null ? '?' : `~${n.toLocaleString('en-US')}`);

const partitionRow = (p: AuditPartition) => ({
  partition: p.name,
  from: p.isDefault ? 'any other id' : day(p.fromTime),
  to: p.isDefault ? '' : day(p.toTime),
  rows: rowsText(p.rowsEstimate),
  size: sizeText(p.bytes),
});

const PARTITION_COLUMNS = [
  { name: 'partition', priority: 0 },
  { name: 'from', priority: 0 },
  { name: 'to', priority: 0 },
  { name: 'rows', priority: 1 },
  { name: 'size', priority: 2 },
];

/** Writes to stdout, waiting for the pipe to drain between pages (io.stdout is process.stdout.write in the binary). */
async function toStdout(ctx: Context, text: string): Promise<void> {
  ctx.io.stdout(text);
  if (process.stdout.writableNeedDrain) await once(process.stdout, 'drain');
}

const exportCommand = command({
  name: 'export',
  summary: 'Write every column of the audit rows from before a time, as JSON Lines or CSV (streamed).',
  usage: 'audit export --before DATE [--since DATE] [--format jsonl|csv] [--out FILE] [--by NAME] [--json]',
  help: [
    '--before DATE   rows of calls made before DATE: 2026-06-01 (UTC midnight), an ISO time, or ago (90d);',
    '  a finished export is recorded (operator action audit.export): prune needs one covering what it drops',
    '--since DATE    and at or after DATE (default: from the first row)',
    '--format F      jsonl (default: one JSON object per row) or csv (a header row, RFC 4180, values exact)',
    '--out FILE      write FILE (written beside it as FILE.partial, renamed when complete; an existing FILE is',
    '                kept); default stdout',
    BY_HELP,
    '--json          with --out: print what was written ({rows, bytes, sha256, …}) as JSON',
  ],
  options: {
    before: { type: 'string' },
    since: { type: 'string' },
    format: { type: 'string', default: 'jsonl' },
    out: { type: 'string' },
    ...BY_OPTION,
  },
  async run(ctx, v) {
    const before = beforeFlag(v.before);
    const since = timeFlag(v.since, '--since');
    if (since && since >= before) throw new CliError('--since must be before --before', EXIT.usage);
    const format = EXPORT_FORMATS.find((f) => f === v.format);
    if (!format)
      throw new CliError(
        `--format must be one of ${EXPORT_FORMATS.join(', ')}, got '${v.format}'`,
        EXIT.usage,
      );
    if (ctx.jsonMode && v.out === undefined)
      throw new CliError('--json needs --out FILE: without it the export itself goes to stdout', EXIT.usage);
    if (v.out !== undefined && (v.out === '' || v.out.length > MAX_PATH || v.out.includes('\0')))
      throw new CliError(`--out must be a file path of 1-${MAX_PATH} characters`, EXIT.usage);
    const actor = cliActor(ctx, v.by);
    const out = v.out;
    const summary = await withDb(ctx, async (db) => {
      let done: ExportSummary;
      if (out === undefined) {
        done = await exportAudit(db, { before, since, format }, (t) => toStdout(ctx, t));
      } else {
        const partial = `${out}.partial`;
        const file = await open(partial, 'wx', 0o600).catch((error: NodeJS.ErrnoException) => {
          throw new CliError(
            error.code === 'EEXIST'
              ? `${partial} exists (an export still running, or one that failed): remove it first`
              : `cannot write ${partial}: ${error.code ?? 'error'}`,
          );
        });
        try {
          done = await exportAudit(db, { before, since, format }, async (t) => {
            await file.write(t);
          });
          await file.sync();
        } catch (error) {
          await file.close().catch(() => undefined);
          await rm(partial, { force: true });
          throw error;
        }
        await file.close();
        // Never over an existing file: link, unlike rename, fails when the name is taken.
        await link(partial, out).catch((error: NodeJS.ErrnoException) => {
          throw new CliError(
            error.code === 'EEXIST'
              ? `${out} exists; the export is in ${partial}`
              : `cannot write ${out}: ${error.code ?? 'error'}`,
          );
        });
        await rm(partial, { force: true });
      }
      await recordExport(db, actor, done, out ?? 'stdout');
      return done;
    });
    if (ctx.jsonMode) ctx.json({ ...summary, out });
    else
      ctx.io.stderr(
        `exported ${summary.rows.toLocaleString('en-US')} rows (${sizeText(summary.bytes)}, sha256 ` +
          `${summary.sha256.slice(0, 16)}…) before ${summary.before}${out ? ` to ${out}` : ''}\n` +
          (summary.first_unsettled
            ? `note: some rows were not settled yet (first ${summary.first_unsettled}); prune needs a later export for their partitions\n`
            : ''),
      );
    return EXIT.ok;
  },
});

function planLines(plan: PrunePlan): string {
  const lines = plan.partitions.map((p) => {
    const blocked = plan.blockers.some((b) => b.partition === p.name);
    const status = blocked ? 'open rows' : plan.unexported.includes(p.name) ? 'no export' : 'ok';
    // 77 columns at most: 18 + dates + ~260,000,000 rows + size + status.
    return `  ${p.name.padEnd(18)} ${day(p.fromTime).padEnd(10)} → ${day(p.toTime)}  ${rowsText(p.rowsEstimate).padStart(12)} ${sizeText(p.bytes).padStart(7)}  ${status}`;
  });
  return lines.join('\n') + '\n';
}

const pruneCommand = command({
  name: 'prune',
  summary: 'Drop the audit partitions (whole months) that end before a time; needs an export of them first.',
  usage: 'audit prune --before DATE [--dry-run] [--force] [--yes] [--by NAME] [--json]',
  help: [
    '--before DATE  drop partitions whose every row is from before DATE (2026-06-01 UTC, an ISO time, or 180d),',
    '  never one holding a call in flight, an outcome unknown, a price pending or an open approval (exit 1)',
    '--dry-run      say what would be dropped and what stops it; change nothing',
    '--force        drop partitions no recorded export covers (`audit export --before` records one)',
    '--yes, -y      do not ask; required when stdin or stdout is not a terminal',
    BY_HELP,
    '  (recorded as operator action audit.prune)',
  ],
  options: {
    before: { type: 'string' },
    'dry-run': { type: 'boolean' },
    force: { type: 'boolean' },
    yes: { type: 'boolean', short: 'y' },
    ...BY_OPTION,
  },
  async run(ctx, v) {
    const before = beforeFlag(v.before);
    const actor = cliActor(ctx, v.by);
    return withDb(ctx, async (db) => {
      const plan = await planPrune(db, before);
      const report = (dropped: boolean) =>
        ctx.json({
          before: plan.before,
          dropped,
          forced: Boolean(v.force),
          partitions: plan.partitions.map((p) => ({
            name: p.name,
            from: p.fromTime?.toISOString() ?? null,
            to: p.toTime?.toISOString() ?? null,
            rows_estimate: p.rowsEstimate,
            bytes: p.bytes,
          })),
          blockers: plan.blockers,
          unexported: plan.unexported,
        });
      if (!plan.partitions.length) {
        if (ctx.jsonMode) report(false);
        else ctx.print(`nothing to prune: no partition ends before ${plan.before}`);
        return EXIT.ok;
      }
      if (!ctx.jsonMode)
        ctx.print(`partitions ending before ${plan.before} (rows estimated):\n${planLines(plan)}`);
      if (plan.blockers.length) {
        if (ctx.jsonMode) report(false);
        const names = [...new Set(plan.blockers.map((b) => b.partition))].join(', ');
        throw new CliError(
          `refusing to prune: ${names} still hold${plan.blockers.length === 1 ? 's' : ''} rows that may change:\n` +
            plan.blockers.map((b) => `  ${b.id}  ${b.why}  (${b.partition})`).join('\n') +
            '\nsettle them first (leash reconcile; approvals decide or expire), or prune an earlier date',
        );
      }
      if (plan.unexported.length && !v.force) {
        if (ctx.jsonMode) report(false);
        const last = plan.partitions.at(-1)?.toTime;
        throw new CliError(
          `refusing to prune: no recorded export covers ${plan.unexported.join(', ')}; run ` +
            `\`leash audit export --before ${last ? day(last) : plan.before} --out FILE\` first, or pass --force`,
        );
      }
      if (v['dry-run']) {
        if (ctx.jsonMode) report(false);
        else ctx.print('dry run: nothing was dropped');
        return EXIT.ok;
      }
      if (!v.yes) {
        if (!ctx.io.ask)
          throw new CliError(
            'refusing to drop without --yes: there is no terminal to ask on; nothing was changed',
            EXIT.usage,
          );
        const answer = await ctx.io.ask(`Drop ${plan.partitions.length} partition(s) for good? [y/N] `);
        if (!/^\s*y(es)?\s*$/i.test(answer)) throw new CliError('not confirmed; nothing was changed');
      }
      try {
        await dropPartitions(db, plan, actor, Boolean(v.force) && plan.unexported.length > 0);
      } catch (error) {
        if (error instanceof PruneRefused)
          throw new CliError(`refusing to prune, nothing was dropped: ${error.message}`);
        throw error;
      }
      if (ctx.jsonMode) report(true);
      else ctx.print(`dropped ${plan.partitions.map((p) => p.name).join(', ')}`);
      return EXIT.ok;
    });
  },
});

const partitionsCommand = command({
  name: 'partitions',
  summary: 'List the audit log partitions (one per UTC month), their id ranges as dates, rows and size.',
  usage: 'audit partitions [--json]',
  help: ['rows are Postgres estimates (as of the last ANALYZE); "to" is exclusive'],
  options: {},
  async run(ctx) {
    const parts = await withDb(ctx, (db) => listAuditPartitions(db));
    if (ctx.jsonMode)
      ctx.json(
        parts.map((p) => ({
          name: p.name,
          default: p.isDefault,
          from: p.fromTime?.toISOString() ?? null,
          to: p.toTime?.toISOString() ?? null,
          rows_estimate: p.rowsEstimate,
          bytes: p.bytes,
        })),
      );
    else ctx.table(parts.map(partitionRow), PARTITION_COLUMNS);
    return EXIT.ok;
  },
});

export const retentionCommands = [exportCommand, pruneCommand, partitionsCommand];
