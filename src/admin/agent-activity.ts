// The console's agents view: every active key with what it did in the last 15 minutes (calls per minute, denials,
// last call), today's spend against the caps that bind it, and the pause that stops it (if any), busiest first, in
// one bounded read.
import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { PauseRow } from '../keys/pauses.js';
import { dayStart } from '../ledger/windows.js';
import { usdToMicros } from '../policy/money.js';
import { pauseView, type PauseView } from './key-ops.js';

/** The activity window: the sparkline's minutes. */
export const ACTIVITY_MINUTES = 15;
/** At most this many keys come back (the busiest); `active_keys` says how many there are in all. */
export const MAX_AGENT_ROWS = 100;
/** How far back the last call of a key that was silent in the window is looked for. */
const LAST_CALL_LOOKBACK = '1 day';

export interface AgentActivityRow {
  key_id: string;
  agent: string;
  run_id: string | null;
  policy: string;
  label: string | null;
  created_at: Date;
  expires_at: Date | null;
  /** Calls per minute over the window, oldest first; the last entry is the 60 s up to `now`. */
  per_minute: number[];
  /** Calls and denials in the window. */
  calls: number;
  denied: number;
  /** The key's latest call (looked for up to a day back); null when there is none. */
  last_call: Date | null;
  /** Today's USD used (spent + reserved) in the key's own window, and its per-key cap; null without one. */
  key_held_micros: number | null;
  key_cap_micros: number | null;
  /** The same for the key's policy (every key of it together), and the policy's daily cap. */
  policy_held_micros: number | null;
  policy_cap_micros: number | null;
  /**
   * The pause that stops the key's calls (on the key, its run, its agent or its policy; the earliest when several
   * do, as admission sees it): the wire that tripped with its figures, or who paused it and why; null when none.
   */
  pause: PauseView | null;
}

export interface AgentActivity {
  now: Date;
  window_minutes: number;
  /** Active keys in all (rows holds at most MAX_AGENT_ROWS of them). */
  active_keys: number;
  /** Busiest first: calls in the last minute, then in the window, then the newest key. */
  rows: AgentActivityRow[];
}

interface Raw {
  id: string;
  agent: string;
  run_id: string | null;
  policy: string;
  label: string | null;
  created_at: Date;
  expires_at: Date | null;
  minutes: Record<string, number> | null;
  calls: number;
  denied: number;
  last_call: Date | null;
  key_held: number | null;
  policy_held: number | null;
  limits: { daily_usd?: unknown; per_key_daily_usd?: unknown } | null;
  /** The active pause's row as JSON (its times as text), or null. */
  pause:
    (Omit<PauseRow, 'paused_at' | 'resumed_at'> & { paused_at: string; resumed_at: string | null }) | null;
  active_keys: number;
}

const capMicros = (usd: unknown): number | null => (typeof usd === 'number' ? usdToMicros(usd) : null);

/**
 * Reads the agents view at `now` (the database's clock). The window's rows are found by the audit log's time index
 * (bounded by the window, whatever the table holds); today's spend comes from the budget windows admission keeps,
 * not from summing the audit log; the last call of a key silent in the window is one index probe (agent, ts) for
 * each returned row only.
 */
export async function agentActivity(db: Db, now: Date, limit = MAX_AGENT_ROWS): Promise<AgentActivity> {
  const { rows } = await activityQuery(now, limit).execute(db);
  const last = ACTIVITY_MINUTES - 1;
  const out = rows.map((r): AgentActivityRow => {
    const keyCap = capMicros(r.limits?.per_key_daily_usd);
    const policyCap = capMicros(r.limits?.daily_usd);
    return {
      key_id: r.id,
      agent: r.agent,
      run_id: r.run_id,
      policy: r.policy,
      label: r.label,
      created_at: r.created_at,
      expires_at: r.expires_at,
      per_minute: Array.from({ length: ACTIVITY_MINUTES }, (_, i) => r.minutes?.[String(last - i)] ?? 0),
      calls: r.calls,
      denied: r.denied,
      last_call: r.last_call,
      key_held_micros: keyCap === null ? null : (r.key_held ?? 0),
      key_cap_micros: keyCap,
      policy_held_micros: policyCap === null ? null : (r.policy_held ?? 0),
      policy_cap_micros: policyCap,
      pause: r.pause
        ? pauseView({
            ...r.pause,
            paused_at: new Date(r.pause.paused_at),
            resumed_at: r.pause.resumed_at ? new Date(r.pause.resumed_at) : null,
          })
        : null,
    };
  });
  return { now, window_minutes: ACTIVITY_MINUTES, active_keys: rows[0]?.active_keys ?? 0, rows: out };
}

/** The statement agentActivity runs (the tests check its plan). */
export function activityQuery(now: Date, limit = MAX_AGENT_ROWS) {
  const since = new Date(now.getTime() - ACTIVITY_MINUTES * 60_000);
  const today = dayStart(now);
  const last = ACTIVITY_MINUTES - 1;
  // The scopes' names are windows.ts's keyScope and policyScope ('key:<id>', 'policy:<name>').
  return sql<Raw>`
    with active as (
      select k.id, k.agent, k.run_id, k.policy, k.label, k.created_at, k.expires_at,
             coalesce(k.policy_version, p.latest_version) as version
        from vault_keys k left join policies p on p.name = k.policy
        where k.revoked_at is null and (k.expires_at is null or k.expires_at > ${now})
    ),
    minutes as (
      select key_id, least(${last}::int, floor(extract(epoch from (${now}::timestamptz - ts)) / 60))::int as ago,
             count(*)::int as n, (count(*) filter (where decision = 'denied'))::int as d, max(ts) as last_ts
        from audit_log
        where ts > ${since} and ts <= ${now} and key_id is not null
        group by 1, 2
    ),
    recent as (
      select key_id, jsonb_object_agg(ago, n) as minutes, sum(n)::int as calls, sum(d)::int as denied,
             max(last_ts) as last_call, coalesce(sum(n) filter (where ago = 0), 0)::int as last_minute
        from minutes group by key_id
    ),
    ranked as (
      select a.*, r.minutes, coalesce(r.calls, 0) as calls, coalesce(r.denied, 0) as denied, r.last_call,
             count(*) over ()::int as active_keys,
             row_number() over (order by coalesce(r.last_minute, 0) desc, coalesce(r.calls, 0) desc,
                                         r.last_call desc nulls last, a.created_at desc, a.id) as rank
        from active a left join recent r on r.key_id = a.id
        order by rank
        limit ${limit}
    )
    select t.id, t.agent, t.run_id, t.policy, t.label, t.created_at, t.expires_at, t.minutes, t.calls, t.denied,
           coalesce(t.last_call, (
             select l.ts from audit_log l
               where l.agent = t.agent and l.key_id = t.id and l.ts <= ${since}
                 and l.ts >= greatest(t.created_at, ${since}::timestamptz - ${LAST_CALL_LOOKBACK}::interval)
               order by l.ts desc limit 1
           )) as last_call,
           kw.spent_micros + kw.reserved_micros as key_held,
           pw.spent_micros + pw.reserved_micros as policy_held,
           v.document -> 'limits' as limits,
           case when z.id is not null then to_jsonb(z) end as pause, t.active_keys
      from ranked t
      left join spend_windows kw
        on kw.scope = 'key:' || t.id and kw.kind = 'usd_day' and kw.window_start = ${today}
      left join spend_windows pw
        on pw.scope = 'policy:' || t.policy and pw.kind = 'usd_day' and pw.window_start = ${today}
      left join policy_versions v on v.policy = t.policy and v.version = t.version
      -- The pause admission would refuse the key's next call for (the same function), then its row for the figures:
      -- at most one active pause per scope (pauses' unique index on scope where resumed_at is null).
      cross join lateral (select leash_active_pause(t.id, t.run_id, t.agent, t.policy) as ap) ap
      left join pauses z
        on z.resumed_at is null and z.scope_kind = ap.ap ->> 'scope_kind' and z.scope = ap.ap ->> 'scope'
      order by t.rank`;
}
