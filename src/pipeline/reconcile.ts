import { sql } from 'kysely';
import { correctReplays } from '../audit/double-counts.js';
import { settleCall } from '../audit/write.js';
import type { Db } from '../db/database.js';
import { loadPolicy } from '../policies/store.js';
import { formatUsd } from '../policy/money.js';
import { scrub, VendorError } from './errors.js';
import type { PipelineDeps } from './run-tool.js';
import type { PendingCall } from './tool.js';
import { vendorContext } from './vendor-context.js';

export interface ReconcileSummary {
  examined: number;
  succeeded: number;
  failed: number;
  priced: number;
  /** Rows settled (or corrected) as replays of the row that counts their vendor object: $0 each. */
  replays: number;
  still_unknown: number;
  skipped: number;
  rows: { id: string; tool: string; before: string; after: string; note?: string }[];
}

/** Which of these vendor object ids another audit row already owns (table audit_objects). */
async function ownersOf(db: Db, vendor: string, exceptId: string, ids: readonly string[]) {
  if (!ids.length) return new Map<string, string>();
  const rows = await db
    .selectFrom('audit_objects')
    .select(['audit_id', 'object_id'])
    .where('vendor', '=', vendor)
    .where('object_id', 'in', ids)
    .where('audit_id', '<>', exceptId)
    .execute();
  return new Map(rows.map((r) => [r.object_id, r.audit_id]));
}

/** The idempotency key the vendor saw for a caller-chosen one (REST: namespaced to the vault key), as recorded. */
const callerKey = (metadata: unknown): string | undefined => {
  const key = (metadata as { idempotency_key?: unknown } | null)?.idempotency_key;
  return typeof key === 'string' ? key : undefined;
};

const isUniqueViolation = (error: unknown) =>
  typeof error === 'object' && error !== null && 'code' in error && error.code === '23505';

/**
 * Settles rows left pending/unknown (crash, timeout) and costs the vendor prices later. Each tool says how:
 * replay with the same idempotency key, or look the object up. Rows younger than `graceSeconds` are left
 * alone so a call still in flight is not raced. An object another row of the same key already counts makes the
 * row a $0 replay of it. With `replaysSince`, first corrects rows from then on that an earlier version counted twice.
 */
export async function reconcile(
  deps: PipelineDeps,
  o: { graceSeconds?: number; limit?: number; replaysSince?: Date } = {},
): Promise<ReconcileSummary> {
  const corrected = o.replaysSince ? await correctReplays(deps.db, { since: o.replaysSince }) : [];
  const grace = o.graceSeconds ?? 30;
  // audit_unsettled holds exactly the admitted rows not yet settled (kept by leash_admit / leash_settle).
  const rows = await deps.db
    .selectFrom('audit_unsettled as u')
    .innerJoin('audit_log as a', 'a.id', 'u.id')
    .select([
      'a.id',
      'a.ts',
      'a.tool',
      'a.policy',
      'a.policy_version',
      'a.outcome',
      'a.cost_status',
      'a.request',
      'a.amount',
      'a.vendor_object_id',
      'a.reserved_micros',
      'a.cost_micros',
      'a.sandbox',
      'a.metadata',
    ])
    .where('u.ts', '<', sql<Date>`now() - make_interval(secs => ${grace})`)
    .orderBy('u.ts')
    .limit(o.limit ?? 500)
    .execute();
  const summary: ReconcileSummary = {
    examined: rows.length,
    succeeded: 0,
    failed: 0,
    priced: 0,
    replays: corrected.length,
    still_unknown: 0,
    skipped: 0,
    rows: corrected.map((c) => ({
      id: c.id,
      tool: '(counted twice)',
      before: 'succeeded',
      after: 'replay',
      note: `replay of ${c.replay_of}; ${formatUsd(c.cost_micros)} no longer counted`,
    })),
  };
  for (const row of rows) {
    const before = row.outcome === 'succeeded' ? `succeeded/cost ${row.cost_status}` : row.outcome;
    const note = (after: string, extra?: string) =>
      summary.rows.push({ id: row.id, tool: row.tool, before, after, ...(extra ? { note: extra } : {}) });
    const tool = deps.catalog.tools.get(row.tool) ?? deps.catalog.endpoints?.get(row.tool);
    if (!tool?.reconcile || !tool.vendor) {
      summary.skipped++;
      note(before, 'tool cannot reconcile');
      continue;
    }
    if (row.sandbox !== deps.sandbox) {
      summary.skipped++;
      note(
        before,
        row.sandbox
          ? 'sandbox row: reconcile it from the sandbox server'
          : 'live row: not reconciled in sandbox mode',
      );
      continue;
    }
    const policy = row.policy
      ? await loadPolicy(deps.db, row.policy, row.policy_version ?? undefined)
      : undefined;
    if (!policy?.tools.get(row.tool) || !deps.catalog.vendors.get(tool.vendor)) {
      summary.skipped++;
      note(before, 'policy or vendor no longer known');
      continue;
    }
    const vendor = tool.vendor;
    const pending: PendingCall = {
      id: row.id,
      ts: row.ts,
      idempotencyKey: callerKey(row.metadata) ?? `leash_${row.id}`,
      request: row.request,
      amount: row.amount,
      vendorObjectId: row.vendor_object_id,
      outcome: row.outcome as PendingCall['outcome'],
      costStatus: row.cost_status,
      reservedMicros: row.reserved_micros,
      costMicros: row.cost_micros,
    };
    let claimed: string | undefined;
    try {
      const vc = await vendorContext(deps, tool, policy);
      const result = await tool.reconcile(
        {
          ...vc.callCtx(pending.idempotencyKey, () =>
            Promise.reject(new Error('no budget during reconcile')),
          ),
          attributed: async (ids) => new Set((await ownersOf(deps.db, vendor, row.id, ids)).keys()),
          auditHash: deps.auditHash,
        },
        pending,
      );
      if (result.outcome === 'succeeded') {
        claimed = result.vendorObjectId;
        // An object another row of this key owns makes this row a replay of it (SQL decides, under the row lock);
        // one another key's row owns is refused (unique_violation, below): one object is never credited twice.
        const settled = await settleCall(
          deps.db,
          row.id,
          'succeeded',
          result.costMicros,
          result.costStatus,
          {
            vendor_object_id: result.vendorObjectId,
            amount: result.amount?.minor,
            currency: result.amount?.currency.toLowerCase(),
          },
          deps.auditHash,
        );
        if (settled.replay_of) {
          summary.replays++;
          note('replay', `its object belongs to audit row ${settled.replay_of}; not counted twice`);
        } else {
          if (row.outcome === 'succeeded') summary.priced++;
          else summary.succeeded++;
          note(result.costStatus === 'pending' ? 'succeeded/cost pending' : 'succeeded');
        }
      } else if (result.outcome === 'failed') {
        await settleCall(
          deps.db,
          row.id,
          'failed',
          0,
          'settled',
          {
            error: scrub(result.error, vc.handle?.secrets),
          },
          deps.auditHash,
        );
        summary.failed++;
        note('failed');
      } else {
        summary.still_unknown++;
        note(before, result.note ?? 'vendor cannot tell yet');
      }
    } catch (error) {
      summary.still_unknown++;
      if (isUniqueViolation(error)) {
        const owner = claimed ? (await ownersOf(deps.db, vendor, row.id, [claimed])).get(claimed) : undefined;
        note(
          before,
          `${claimed ?? 'its object'} already belongs to audit row ${owner ?? '(another)'}; not credited twice`,
        );
      } else note(before, error instanceof VendorError ? `vendor ${error.kind}` : 'error');
    }
  }
  return summary;
}

/**
 * Runs reconcile every `everyMs` in the background (serve does this so late vendor prices and timed-out calls
 * settle without a cron). A Postgres advisory lock keeps replicas from reconciling the same rows at once.
 */
export function startReconcileLoop(
  deps: PipelineDeps,
  o: { everyMs: number; graceSeconds?: number },
): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (running) return;
    running = (async () => {
      try {
        // The lock lives in a transaction held open for the pass (one pooled connection); replicas skip while it is held.
        await deps.db.transaction().execute(async (trx) => {
          const { rows } = await sql<{
            ok: boolean;
          }>`select pg_try_advisory_xact_lock(hashtext('leash:reconcile')) as ok`.execute(trx);
          if (!rows[0]?.ok) return;
          const s = await reconcile(deps, { graceSeconds: o.graceSeconds ?? 30 });
          if (s.examined)
            deps.log.info('reconciled', {
              examined: s.examined,
              succeeded: s.succeeded,
              failed: s.failed,
              priced: s.priced,
              still_unknown: s.still_unknown,
            });
        });
      } catch (error) {
        deps.log.error('reconcile loop failed', { error: error instanceof Error ? error.name : 'unknown' });
      } finally {
        running = undefined;
      }
    })();
  }, o.everyMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
