// audit_log is partitioned by RANGE on its id, one partition per UTC month (migration 0022). Audit ids are UUIDv7:
// their first 48 bits are the admitting replica's clock in ms, so the lowest UUID of a month's first millisecond
// bounds the month, and the primary key stays `id` (a lookup or a settle by id touches one partition). Rows from
// before the upgrade sit in one partition, audit_log_legacy; audit_log_default catches any id no other partition
// covers, so an insert never fails. leash creates the next months ahead itself: at migrate, and from `leash serve`.
import { sql } from 'kysely';
import type { Logger } from '../config/logger.js';
import type { Db } from '../db/database.js';

/** The partition that takes any id no month covers. */
export const DEFAULT_PARTITION = 'audit_log_default';
/** Months created ahead of the current one. */
export const MONTHS_AHEAD = 2;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NAME = /^audit_log_[a-z0-9_]{1,40}$/;

/** One partition of audit_log: ids from `from` (inclusive; undefined = no lower bound) to `to` (exclusive). */
export interface AuditPartition {
  name: string;
  isDefault: boolean;
  from?: string | undefined;
  to?: string | undefined;
  /** The times those bounds stand for (by the admitting replica's clock). */
  fromTime?: Date | undefined;
  toTime?: Date | undefined;
  /** Postgres's estimate (reltuples after the last ANALYZE or VACUUM); null when it has none yet. */
  rowsEstimate: number | null;
  bytes: number;
}

/** The first instant of `at`'s UTC month, `months` later. */
export function monthStart(at: Date, months = 0): Date {
  return new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + months, 1));
}

/** The lowest UUID any UUIDv7 minted at `at` or later sorts at or above (Postgres compares uuids bytewise). */
export function uuidFloor(at: Date): string {
  const ms = at.getTime();
  if (!Number.isSafeInteger(ms) || ms < 0 || ms >= 2 ** 48) throw new RangeError('time outside UUIDv7 range');
  const h = ms.toString(16).padStart(12, '0');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-0000-0000-000000000000`;
}

/** The time a UUIDv7 carries (for another kind of UUID, whatever its first 48 bits say). */
export function uuidTime(id: string): Date {
  return new Date(Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16));
}

/** The name of the partition for the month starting at `month`: audit_log_y2026m12. */
export function monthPartitionName(month: Date): string {
  return `audit_log_y${month.getUTCFullYear()}m${String(month.getUTCMonth() + 1).padStart(2, '0')}`;
}

const BOUND = /^FOR VALUES FROM \((?:MINVALUE|'([0-9a-f-]{36})')\) TO \((?:MAXVALUE|'([0-9a-f-]{36})')\)$/;

/** Every partition of audit_log, oldest range first, the default last. */
export async function listAuditPartitions(db: Db): Promise<AuditPartition[]> {
  const { rows } = await sql<{ name: string; bound: string; reltuples: number; bytes: string }>`
    select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bound, c.reltuples::float8 as reltuples,
           pg_total_relation_size(c.oid)::text as bytes
      from pg_inherits i join pg_class c on c.oid = i.inhrelid
      where i.inhparent = 'audit_log'::regclass`.execute(db);
  const parts = rows.map((r): AuditPartition => {
    const m = BOUND.exec(r.bound);
    const from = m?.[1];
    const to = m?.[2];
    return {
      name: r.name,
      isDefault: r.bound === 'DEFAULT',
      from,
      to,
      fromTime: from ? uuidTime(from) : undefined,
      toTime: to ? uuidTime(to) : undefined,
      rowsEstimate: r.reltuples >= 0 ? Math.round(r.reltuples) : null,
      bytes: Number(r.bytes),
    };
  });
  const key = (p: AuditPartition) => (p.isDefault ? '~' : (p.from ?? ''));
  return parts.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

const overlaps = (p: AuditPartition, from: string, to: string) =>
  !p.isDefault && (p.from === undefined || p.from < to) && (p.to === undefined || p.to > from);

const LIKE_PARENT = sql.raw(
  'like audit_log including defaults including constraints including storage including comments ' +
    'including generated including identity including statistics including compression',
);

/** Storage parameters for a new partition: the default partition's (fillfactor=85, as the table had), else that. */
async function storage(db: Db): Promise<string> {
  const { rows } = await sql<{ o: string | null }>`
    select array_to_string(c.reloptions, ', ') as o from pg_class c
      where c.oid = to_regclass(${DEFAULT_PARTITION})`.execute(db);
  const o = rows[0]?.o;
  return o && /^[a-z_]+=[0-9a-z.]+(, [a-z_]+=[0-9a-z.]+)*$/.test(o) ? o : 'fillfactor=85';
}

/**
 * Creates the partition for ids in [from, to), moving any rows the default partition holds for that range into it.
 * Built beside the table, then attached: ATTACH takes SHARE UPDATE EXCLUSIVE on audit_log (admissions and reads go
 * on), where CREATE … PARTITION OF would take ACCESS EXCLUSIVE. Attaching scans the default partition once.
 */
async function createPartition(trx: Db, name: string, from: string, to: string, options: string) {
  if (!NAME.test(name) || !UUID.test(from) || !UUID.test(to)) throw new RangeError('bad partition bounds');
  const table = sql.id(name);
  await sql`create table ${table} (${LIKE_PARENT}) with (${sql.raw(options)})`.execute(trx);
  await sql`
    with moved as (delete from ${sql.id(DEFAULT_PARTITION)} where id >= ${from}::uuid and id < ${to}::uuid returning *)
    insert into ${table} select * from moved`.execute(trx);
  await sql`alter table audit_log attach partition ${table}
              for values from (${sql.lit(from)}) to (${sql.lit(to)})`.execute(trx);
  await nameIndexes(trx, name);
}

/** Names a partition's indexes after the table's (audit_by_run_y2027m01), so a plan says which index served. */
async function nameIndexes(trx: Db, partition: string): Promise<void> {
  const { rows } = await sql<{ child: string; want: string }>`
    select ci.relname as child, left(pi.relname || '_' || substr(${partition}, 11), 63) as want
      from pg_index x join pg_class ci on ci.oid = x.indexrelid
      join pg_inherits h on h.inhrelid = ci.oid join pg_class pi on pi.oid = h.inhparent
      where x.indrelid = ${partition}::regclass`.execute(trx);
  for (const r of rows)
    if (r.child !== r.want)
      await sql`alter index ${sql.id(r.child)} rename to ${sql.id(r.want)}`.execute(trx);
}

/**
 * Makes sure this month and the next `ahead` months have their partitions (and that the default partition exists),
 * creating what is missing; returns the names created. Replicas doing it at once take turns (an advisory lock; one
 * that finds it held skips). Waits at most 5 s for a lock on the table, so it never queues admissions behind it.
 */
export async function ensureAuditPartitions(
  db: Db,
  o: { now?: Date; ahead?: number } = {},
): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ ok: boolean; now: Date }>`
      select pg_try_advisory_xact_lock(hashtext('leash:audit_partitions')) as ok, clock_timestamp() as now,
             set_config('lock_timeout', '5s', true) as _`.execute(trx);
    if (!rows[0]?.ok) return [];
    const now = o.now ?? rows[0].now;
    const parts = await listAuditPartitions(trx);
    const made: string[] = [];
    if (!parts.some((p) => p.isDefault)) {
      await sql`create table ${sql.id(DEFAULT_PARTITION)} partition of audit_log default
                  with (fillfactor = 85)`.execute(trx);
      await nameIndexes(trx, DEFAULT_PARTITION);
      made.push(DEFAULT_PARTITION);
    }
    const options = await storage(trx);
    const ahead = Math.min(Math.max(Math.trunc(o.ahead ?? MONTHS_AHEAD), 0), 24);
    for (let i = 0; i <= ahead; i++) {
      const month = monthStart(now, i);
      const from = uuidFloor(month);
      const to = uuidFloor(monthStart(now, i + 1));
      if (parts.some((p) => overlaps(p, from, to))) continue;
      const name = monthPartitionName(month);
      await createPartition(trx, name, from, to, options);
      made.push(name);
    }
    return made;
  });
}

/**
 * Keeps partitions created ahead while `leash serve` runs: now, then every `everyMs` (default 6 h; a month ahead is
 * always there, so a missed pass costs nothing). Failures are logged and tried again at the next pass.
 */
export function startPartitionLoop(
  db: Db,
  log: Logger,
  o: { everyMs?: number } = {},
): { stop(): Promise<void> } {
  let running: Promise<void> = Promise.resolve();
  const pass = () => {
    running = ensureAuditPartitions(db)
      .then((made) => {
        if (made.length) log.info('audit partitions created', { partitions: made });
      })
      .catch((error: unknown) => {
        log.error('creating audit partitions failed', {
          error: error instanceof Error ? error.message.slice(0, 200) : 'unknown',
        });
      });
  };
  pass();
  const timer = setInterval(pass, o.everyMs ?? 6 * 3_600_000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
