// `leash audit prune`: retention by whole partitions. Only month partitions (and audit_log_legacy) whose whole id range
// is before the given time are candidates; none is dropped while it holds a row that may still change (in flight,
// outcome unknown, price pending, or held for an approval still open), and none without an export that covered it
// after its rows settled, unless forced. Detach and drop run in one transaction with the operator action that records
// them, each partition locked first and checked again under the lock.
import { sql } from 'kysely';
import { durableCommit, type Db } from '../db/database.js';
import type { ExportSummary } from './export.js';
import { recordAction, type Actor } from './operator-actions.js';
import { listAuditPartitions, uuidFloor, type AuditPartition } from './partitions.js';

/** A row that keeps its partition: which, and why. */
export interface PruneBlocker {
  partition: string;
  id: string;
  why:
    'outcome pending' | 'outcome unknown' | 'price pending' | 'approval pending' | 'approved, not yet used';
}

export interface PrunePlan {
  before: string;
  /** Partitions entirely before `before`, oldest first. */
  partitions: AuditPartition[];
  /** Rows that keep a partition (at most 10 per partition). */
  blockers: PruneBlocker[];
  /** Partitions no recorded export covers (with its rows settled). */
  unexported: string[];
  /** The audit.export actions that cover the others. */
  exports: string[];
}

const BLOCKERS_SHOWN = 10;

async function blockersOf(db: Db, p: AuditPartition): Promise<PruneBlocker[]> {
  const lo = p.from ? sql`and u.id >= ${p.from}::uuid` : sql``;
  const hi = sql`${p.to ?? ''}::uuid`;
  // audit_unsettled lists exactly the admitted rows not yet settled (admission and settle keep it, in their own
  // transactions); reconcile works from it too.
  const { rows: calls } = await sql<{ id: string; outcome: string; cost_status: string }>`
    select a.id::text as id, a.outcome, a.cost_status from audit_unsettled u join audit_log a on a.id = u.id
      where u.id < ${hi} ${lo} and a.decision = 'allowed'
        and (a.outcome in ('pending', 'unknown') or a.cost_status = 'pending')
      order by u.id limit ${BLOCKERS_SHOWN}`.execute(db);
  const { rows: held } = await sql<{ id: string; status: string }>`
    select u.held_audit_id::text as id, u.status from approvals u
      where u.status in ('pending', 'approved') and u.held_audit_id < ${hi}
        ${p.from ? sql`and u.held_audit_id >= ${p.from}::uuid` : sql``}
      order by u.held_audit_id limit ${BLOCKERS_SHOWN}`.execute(db);
  return [
    ...calls.map((r): PruneBlocker => ({
      partition: p.name,
      id: r.id,
      why:
        r.outcome === 'pending'
          ? 'outcome pending'
          : r.outcome === 'unknown'
            ? 'outcome unknown'
            : 'price pending',
    })),
    ...held.map((r): PruneBlocker => ({
      partition: p.name,
      id: r.id,
      why: r.status === 'pending' ? 'approval pending' : 'approved, not yet used',
    })),
  ];
}

/** Exports recorded as operator actions, newest first (their detail is an ExportSummary). */
async function recordedExports(db: Db): Promise<{ id: string; e: Partial<ExportSummary> }[]> {
  const rows = await db
    .selectFrom('operator_actions')
    .select(['detail'])
    .select(sql<string>`id::text`.as('id'))
    .where('action', '=', 'audit.export')
    .orderBy('id', 'desc')
    .limit(1_000)
    .execute();
  return rows.map((r) => ({ id: r.id, e: r.detail }));
}

/** An export covers a partition when its id range holds the partition's and no row in it was unsettled then. */
function covers(e: Partial<ExportSummary>, p: AuditPartition): boolean {
  if (typeof e.to !== 'string' || !p.to || e.to < p.to) return false;
  if (e.from !== null && (typeof e.from !== 'string' || !p.from || e.from > p.from)) return false;
  return e.first_unsettled === null || (typeof e.first_unsettled === 'string' && e.first_unsettled >= p.to);
}

/** What `prune --before` would drop, what keeps which partition, and which lack an export. Changes nothing. */
export async function planPrune(db: Db, before: Date): Promise<PrunePlan> {
  const bound = uuidFloor(before);
  const partitions = (await listAuditPartitions(db)).filter((p) => !p.isDefault && p.to && p.to <= bound);
  const blockers: PruneBlocker[] = [];
  for (const p of partitions) blockers.push(...(await blockersOf(db, p)));
  const exports = partitions.length ? await recordedExports(db) : [];
  const unexported: string[] = [];
  const used = new Set<string>();
  for (const p of partitions) {
    const by = exports.find((x) => covers(x.e, p));
    if (by) used.add(by.id);
    else unexported.push(p.name);
  }
  return { before: before.toISOString(), partitions, blockers, unexported, exports: [...used] };
}

/** Thrown when the partitions changed between the plan and the drop (a row routed late into one, say). */
export class PruneRefused extends Error {
  override name = 'PruneRefused';
}

/** How long one attempt waits for audit_log's lock, and how many attempts a prune makes. */
const PRUNE_LOCK_MS = 500;
const PRUNE_ATTEMPTS = 20;

/**
 * Detaches and drops the plan's partitions in one transaction, recording the operator action with them. audit_log is
 * locked first (the order admissions take: the table, then its partitions), so a prune never deadlocks with a call;
 * an attempt waits at most PRUNE_LOCK_MS for it (calls queue behind a waiting prune for no longer), and a prune
 * makes PRUNE_ATTEMPTS. Under the lock each partition is checked again for blockers; any found refuses the prune.
 */
export async function dropPartitions(db: Db, plan: PrunePlan, actor: Actor, forced: boolean): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await dropOnce(db, plan, actor, forced);
    } catch (error) {
      if ((error as { code?: unknown }).code !== '55P03' || attempt >= PRUNE_ATTEMPTS) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
    }
  }
}

async function dropOnce(db: Db, plan: PrunePlan, actor: Actor, forced: boolean): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`select set_config('lock_timeout', ${`${PRUNE_LOCK_MS}ms`}, true)`.execute(trx);
    await sql`lock table audit_log in access exclusive mode`.execute(trx);
    for (const p of plan.partitions) {
      const still = await blockersOf(trx, p);
      if (still.length)
        throw new PruneRefused(
          `${p.name} holds ${still[0]?.id ?? 'a row'} (${still[0]?.why ?? 'unsettled'})`,
        );
    }
    await recordAction(trx, actor, 'audit.prune', `audit:before:${plan.before}`, {
      before: plan.before,
      forced,
      exports: plan.exports,
      partitions: plan.partitions.map((p) => ({
        name: p.name,
        from: p.from ?? null,
        to: p.to ?? null,
        rows_estimate: p.rowsEstimate,
        bytes: p.bytes,
      })),
    });
    for (const p of plan.partitions) {
      // audit_unsettled may keep ids of rows that settled (nothing reads them); the range's go with it.
      await sql`delete from audit_unsettled where id < ${p.to ?? ''}::uuid
                  ${p.from ? sql`and id >= ${p.from}::uuid` : sql``}`.execute(trx);
      await sql`alter table audit_log detach partition ${sql.id(p.name)}`.execute(trx);
      await sql`drop table ${sql.id(p.name)}`.execute(trx);
    }
    await durableCommit(trx);
  });
}
