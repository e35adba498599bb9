import { settleCall } from '../audit/write.js';
import { reconcile } from '../pipeline/reconcile.js';
import { formatUsd, parseUsd, UsdInputError } from '../policy/money.js';
import { CliError, EXIT, command, type CommandGroup, type Context } from './command.js';
import { openRuntime } from './runtime.js';
import { auditHasher } from '../audit/audit-hash.js';
import { timeFlag } from './audit.js';
import { withDb } from './with-db.js';

const reconcileCmd = command({
  name: '',
  summary: 'Settle audit rows left pending/unknown (crash, timeout) and costs the vendor prices later.',
  usage:
    'reconcile [--grace 30] [--replays-since 7d] [--sandbox] [--json]  |  reconcile --settle <audit id> --outcome succeeded|failed [--cost-usd X]',
  help: [
    '--grace S   leave rows younger than S seconds alone (default 30)',
    '--replays-since T  also correct replays an older leash counted twice, in rows since T',
    '            (default 7d; a time or an age: 2026-11-20, 30d)',
    '--settle ID --outcome succeeded|failed [--cost-usd X]: settle one row by hand when the vendor cannot tell',
    '--sandbox   reconcile sandbox rows (only meaningful inside a sandbox server)',
    '--json      print the summary as JSON',
  ],
  options: {
    grace: { type: 'string', default: '30' },
    'replays-since': { type: 'string', default: '7d' },
    sandbox: { type: 'boolean' },
    json: { type: 'boolean' },
    settle: { type: 'string' },
    outcome: { type: 'string' },
    'cost-usd': { type: 'string' },
  },
  async run(ctx, v) {
    if (v.settle !== undefined) return settleByHand(ctx, v);
    const grace = Number(v.grace);
    if (!Number.isFinite(grace) || grace < 0)
      throw new CliError('--grace must be a number of seconds', EXIT.usage);
    const replaysSince = timeFlag(v['replays-since'], '--replays-since');
    const runtime = await openRuntime(ctx.config(), { sandbox: Boolean(v.sandbox), poolMax: 2 });
    try {
      const s = await reconcile(runtime.deps, {
        graceSeconds: grace,
        ...(replaysSince !== undefined ? { replaysSince } : {}),
      });
      if (v.json) ctx.json(s);
      else {
        ctx.print(
          `examined ${s.examined}: ${s.succeeded} succeeded, ${s.failed} failed, ${s.priced} priced, ${s.replays} replays, ${s.still_unknown} still unknown, ${s.skipped} skipped`,
        );
        for (const r of s.rows)
          ctx.print(
            `  ${r.id}  ${r.tool.padEnd(12)}  ${r.before} → ${r.after}${r.note ? `  (${r.note})` : ''}`,
          );
      }
      return s.still_unknown > 0 ? EXIT.failure : EXIT.ok;
    } finally {
      await runtime.close();
    }
  },
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `--settle`: one row by hand, for calls the vendor cannot tell about (after the operator checked). */
async function settleByHand(
  ctx: Context,
  v: {
    settle?: string | undefined;
    outcome?: string | undefined;
    'cost-usd'?: string | undefined;
    json?: boolean | undefined;
  },
): Promise<number> {
  const id = v.settle ?? '';
  if (!UUID.test(id)) throw new CliError('--settle takes an audit row id (a uuid)', EXIT.usage);
  if (v.outcome !== 'succeeded' && v.outcome !== 'failed')
    throw new CliError('--outcome must be succeeded or failed', EXIT.usage);
  const outcome = v.outcome;
  let costMicros: number | undefined;
  try {
    costMicros = v['cost-usd'] !== undefined ? parseUsd(v['cost-usd'], '--cost-usd') : undefined;
  } catch (error) {
    if (error instanceof UsdInputError) throw new CliError(error.message, EXIT.usage);
    throw error;
  }
  const result = await withDb(ctx, async (db) => {
    const row = await db
      .selectFrom('audit_log')
      .select(['reserved_micros', 'cost_micros'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw new CliError(`no audit row ${id}`, EXIT.notFound);
    const micros = costMicros ?? (row.reserved_micros || row.cost_micros);
    return settleCall(
      db,
      id,
      outcome,
      outcome === 'succeeded' ? micros : 0,
      'settled',
      { metadata: { settled_by: 'operator (leash reconcile --settle)' } },
      auditHasher(ctx.config().auditKey),
    );
  });
  if (v.json) ctx.json(result);
  else if (result.settled) ctx.print(`${id} settled: ${outcome}, cost ${formatUsd(result.cost_micros ?? 0)}`);
  else ctx.print(`${id} not changed: ${result.reason ?? 'already settled'}`);
  return result.settled ? EXIT.ok : EXIT.failure;
}

export const reconcileCommands: CommandGroup = { name: 'reconcile', commands: [reconcileCmd] };
