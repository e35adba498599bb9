// The gauges of shared state, read from Postgres at scrape time so every replica reports the same: cap use per policy
// and window, today's spend, unsettled rows and the approval queue. One bounded query per scrape, under a timeout.
import { sql } from 'kysely';
import { Gauge, type Registry } from 'prom-client';
import type { Db } from '../db/database.js';

/** A scrape reports at most this many policies, the most used first, however many policies there are. */
export const MAX_POLICY_SERIES = 500;
/** How long a scrape waits for the database before it answers with the last values read and database_up 0. */
export const DATABASE_TIMEOUT_MS = 2_000;

/** One policy's current windows: caps from its latest version (USD in micros), use from spend_windows. */
interface PolicyUse {
  policy: string;
  day_cap: number | null;
  hour_cap: number | null;
  spent: number;
  reserved: number;
  requests: number;
  day_ratio: number | null;
  hour_ratio: number | null;
}

interface Snapshot {
  policies: PolicyUse[];
  unsettled: number;
  approvals_pending: number;
  oldest_pending_seconds: number;
  /** Active pauses per scope kind (key, run, agent, policy). */
  pauses: Record<string, number>;
}

/**
 * Windows are the database's UTC day and hour (`now()`), as admission counts them. A cap of 0 (nothing allowed) has
 * no ratio. Policies are ordered by use before the limit, so the ones near their caps are never the ones left out.
 */
const snapshotQuery = (limit: number) => sql<Snapshot>`
  with caps as (
    select p.name as policy,
           case when jsonb_typeof(v.document->'limits'->'daily_usd') = 'number'
                then round((v.document->'limits'->>'daily_usd')::numeric * 1000000) end as day_cap,
           case when jsonb_typeof(v.document->'limits'->'hourly_requests') = 'number'
                then (v.document->'limits'->>'hourly_requests')::numeric end as hour_cap
      from policies p
      join policy_versions v on v.policy = p.name and v.version = p.latest_version
  ), used as (
    select c.policy, c.day_cap, c.hour_cap,
           coalesce(d.spent_micros, 0) as spent,
           coalesce(d.reserved_micros, 0) as reserved,
           coalesce(h.requests, 0) as requests
      from caps c
      left join spend_windows d
        on d.scope = 'policy:' || c.policy and d.kind = 'usd_day' and d.window_start = date_trunc('day', now(), 'UTC')
      left join spend_windows h
        on h.scope = 'policy:' || c.policy and h.kind = 'requests_hour'
       and h.window_start = date_trunc('hour', now(), 'UTC')
     where c.day_cap is not null or c.hour_cap is not null
  ), rated as (
    select used.*,
           ((spent + reserved) / nullif(day_cap, 0))::float8 as day_ratio,
           (requests / nullif(hour_cap, 0))::float8 as hour_ratio
      from used
  ), top as (
    select * from rated order by greatest(day_ratio, hour_ratio) desc nulls last, policy limit ${limit}
  ), waiting as (
    select created_at from approvals where status = 'pending' and expires_at > now()
  )
  select (select count(*) from audit_unsettled)::int as unsettled,
         (select count(*) from waiting)::int as approvals_pending,
         coalesce((select extract(epoch from now() - min(created_at)) from waiting), 0)::float8 as oldest_pending_seconds,
         coalesce((select json_agg(top) from top), '[]'::json) as policies,
         coalesce((select json_object_agg(scope_kind, n) from
                    (select scope_kind, count(*)::int as n from pauses where resumed_at is null group by scope_kind) z),
                  '{}'::json) as pauses`;

/** The snapshot, or null when the database failed or took longer than `timeoutMs` (it cancels the query itself). */
async function readSnapshot(db: Db, timeoutMs: number): Promise<Snapshot | null> {
  try {
    return await db.transaction().execute(async (trx) => {
      await sql`select set_config('statement_timeout', ${String(timeoutMs)}, true)`.execute(trx);
      const { rows } = await snapshotQuery(MAX_POLICY_SERIES).execute(trx);
      return rows[0] ?? null;
    });
  } catch {
    return null;
  }
}

/** `p`, or null once `ms` have passed (waiting for a pool connection counts too). */
function within<T>(p: Promise<T | null>, ms: number): Promise<T | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    void p.then((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/**
 * Registers the database gauges. Each one's collect() shares one read per scrape, and at most one query is in flight
 * per process (a scrape while the last query still runs waits on that one). When a read fails or times out the
 * gauges keep the values last read and `leash_metrics_database_up` is 0.
 */
export function registerDatabaseGauges(registry: Registry, db: Db, timeoutMs = DATABASE_TIMEOUT_MS): void {
  let reading: Promise<Snapshot | null> | undefined;
  let scrape: Promise<void> | undefined;
  const collect = () => (scrape ??= refresh().finally(() => (scrape = undefined)));
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
    new Gauge<L>({ name, help, labelNames, registers: [registry], collect });

  const capUsed = gauge(
    'leash_policy_cap_used_ratio',
    'Share of each policy cap in use in the current window, across every replica: (spent + reserved) / daily_usd ' +
      '(window usd_day, UTC day), requests / hourly_requests (window requests_hour)',
    ['policy', 'window'],
  );
  const spent = gauge(
    'leash_policy_spent_usd',
    'USD spent today (UTC) under each policy with a daily cap, across every replica',
    ['policy'],
  );
  const reserved = gauge(
    'leash_policy_reserved_usd',
    'USD reserved today (UTC) by calls not yet settled, per policy with a daily cap',
    ['policy'],
  );
  const unsettled = gauge(
    'leash_unsettled_rows',
    'Admitted calls whose outcome or cost is not settled yet (reconcile settles them)',
  );
  const approvalsPending = gauge(
    'leash_approvals_pending',
    'Calls held for a person whose approval request is still open (pending, not expired)',
  );
  const oldestPending = gauge(
    'leash_approvals_oldest_pending_seconds',
    'How long the oldest open approval request has waited for a person, in seconds (0 when none)',
  );
  const paused = gauge(
    'leash_paused_scopes',
    'Active pauses by scope kind (key, run, agent, policy): a tripwire or an operator paused them; every call of ' +
      'each is refused key_paused until resumed',
    ['scope_kind'],
  );
  const up = gauge('leash_metrics_database_up', '1 when the last scrape could read the database gauges');

  function apply(s: Snapshot) {
    capUsed.reset();
    spent.reset();
    reserved.reset();
    for (const p of s.policies) {
      if (p.day_ratio !== null) capUsed.set({ policy: p.policy, window: 'usd_day' }, p.day_ratio);
      if (p.hour_ratio !== null) capUsed.set({ policy: p.policy, window: 'requests_hour' }, p.hour_ratio);
      if (p.day_cap !== null) {
        spent.set({ policy: p.policy }, p.spent / 1e6);
        reserved.set({ policy: p.policy }, p.reserved / 1e6);
      }
    }
    unsettled.set(s.unsettled);
    approvalsPending.set(s.approvals_pending);
    oldestPending.set(s.oldest_pending_seconds);
    for (const kind of ['key', 'run', 'agent', 'policy'])
      paused.set({ scope_kind: kind }, s.pauses[kind] ?? 0);
  }

  async function refresh() {
    reading ??= readSnapshot(db, timeoutMs).finally(() => (reading = undefined));
    const s = await within(reading, timeoutMs);
    if (s) apply(s);
    up.set(s ? 1 : 0);
  }
}
