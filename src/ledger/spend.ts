import { sql, type RawBuilder } from 'kysely';
import type { Db } from '../db/database.js';
import type { CompiledPolicy } from '../policy/compile.js';
import { loadPolicy } from '../policies/store.js';
import { databaseNow } from '../db/clock.js';
import { dayStart, keyScope, policyScope } from './windows.js';

export type SpendGrouping = 'agent' | 'key' | 'policy' | 'day';

export interface SpendRow {
  /** The agent, key id, policy name or UTC day (YYYY-MM-DD); null for rows without one. */
  group: string | null;
  /** For `by: 'key'`: the key's agent and policy. */
  agent: string | null;
  policy: string | null;
  /** cost_micros + reserved_micros of allowed calls: what these calls count against budgets. */
  held_micros: number;
  cost_micros: number;
  reserved_micros: number;
  /** Every call, denied ones included. */
  requests: number;
  denied: number;
  /** For `by: 'key' | 'policy'`: today's USD cap (null when the policy sets none) and what is left of it. */
  cap_micros: number | null;
  remaining_micros: number | null;
}

export interface SpendReport {
  by: SpendGrouping;
  since: Date;
  until: Date | null;
  /** Start of the UTC day whose windows `cap_micros` / `remaining_micros` describe. */
  today: Date;
  rows: SpendRow[];
}

// Column expressions without parameters, so Postgres matches the select and group-by entries.
const GROUP_EXPR: Record<SpendGrouping, RawBuilder<string | null>> = {
  agent: sql<string | null>`agent`,
  key: sql<string | null>`key_id`,
  policy: sql<string | null>`policy`,
  day: sql<string | null>`to_char(ts at time zone 'UTC', 'YYYY-MM-DD')`,
};

/**
 * Spend and call counts from the audit log, grouped by agent, key, policy or UTC day, from `since`
 * (default: start of today, UTC) to `until` (exclusive). For keys and policies, also today's USD cap
 * and what is left of it, from the policy's limits and the `spend_windows` rows.
 */
export async function spendReport(
  db: Db,
  o: { by: SpendGrouping; since?: Date | undefined; until?: Date | undefined },
  now?: Date,
): Promise<SpendReport> {
  // "Today" by the database's clock, as admission counts it, not this machine's.
  const today = dayStart(now ?? (await databaseNow(db)));
  const since = o.since ?? today;
  const group = GROUP_EXPR[o.by];
  let q = db
    .selectFrom('audit_log')
    .select([
      group.as('group'),
      sql<string | null>`max(agent)`.as('agent'),
      sql<string | null>`max(policy)`.as('policy'),
      sql<number>`coalesce(sum(cost_micros) filter (where decision = 'allowed'), 0)::bigint`.as(
        'cost_micros',
      ),
      sql<number>`coalesce(sum(reserved_micros) filter (where decision = 'allowed'), 0)::bigint`.as(
        'reserved_micros',
      ),
      sql<number>`count(*)::int`.as('requests'),
      sql<number>`(count(*) filter (where decision = 'denied'))::int`.as('denied'),
    ])
    .where('ts', '>=', since)
    .groupBy(group);
  if (o.until) q = q.where('ts', '<', o.until);
  const agg = await q.execute();

  const caps = await todaysCaps(db, o.by, agg, today);
  const rows: SpendRow[] = agg.map((r) => {
    const cap = r.group === null ? undefined : caps.get(r.group);
    return {
      group: r.group,
      agent: o.by === 'key' ? r.agent : null,
      policy: o.by === 'key' ? r.policy : null,
      held_micros: r.cost_micros + r.reserved_micros,
      cost_micros: r.cost_micros,
      reserved_micros: r.reserved_micros,
      requests: r.requests,
      denied: r.denied,
      cap_micros: cap?.cap ?? null,
      remaining_micros: cap?.remaining ?? null,
    };
  });
  rows.sort((a, b) =>
    o.by === 'day'
      ? (a.group ?? '').localeCompare(b.group ?? '')
      : b.held_micros - a.held_micros ||
        b.requests - a.requests ||
        (a.group ?? '').localeCompare(b.group ?? ''),
  );
  return { by: o.by, since, until: o.until ?? null, today, rows };
}

/** Today's USD cap and remaining per key id or policy name (keys follow their pinned policy version). */
async function todaysCaps(
  db: Db,
  by: SpendGrouping,
  groups: { group: string | null }[],
  today: Date,
): Promise<Map<string, { cap: number; remaining: number }>> {
  const out = new Map<string, { cap: number; remaining: number }>();
  const names = groups.flatMap((g) => (g.group === null ? [] : [g.group]));
  if ((by !== 'key' && by !== 'policy') || names.length === 0) return out;

  const capOf = new Map<string, number>();
  const policies = new Map<string, Promise<CompiledPolicy | undefined>>();
  const policy = (name: string, version: number | null) => {
    const id = `${name}@${version ?? 'latest'}`;
    let p = policies.get(id);
    if (!p) policies.set(id, (p = loadPolicy(db, name, version ?? undefined)));
    return p;
  };
  if (by === 'key') {
    const keys = await db
      .selectFrom('vault_keys')
      .select(['id', 'policy', 'policy_version'])
      .where('id', '=', sql<string>`any(${names}::text[])`)
      .execute();
    for (const k of keys) {
      const cap = (await policy(k.policy, k.policy_version))?.limits.perKeyDailyMicros;
      if (cap !== undefined) capOf.set(k.id, cap);
    }
  } else {
    for (const name of names) {
      const cap = (await policy(name, null))?.limits.dailyMicros;
      if (cap !== undefined) capOf.set(name, cap);
    }
  }
  if (capOf.size === 0) return out;

  const scopeOf = by === 'key' ? keyScope : policyScope;
  const windows = await db
    .selectFrom('spend_windows')
    .select(['scope', 'spent_micros', 'reserved_micros'])
    .where('kind', '=', 'usd_day')
    .where('window_start', '=', today)
    .where('scope', '=', sql<string>`any(${[...capOf.keys()].map((n) => scopeOf(n))}::text[])`)
    .execute();
  const used = new Map(windows.map((w) => [w.scope, w.spent_micros + w.reserved_micros]));
  for (const [name, cap] of capOf) {
    out.set(name, { cap, remaining: Math.max(cap - (used.get(scopeOf(name)) ?? 0), 0) });
  }
  return out;
}
