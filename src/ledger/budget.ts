import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { CompiledPolicy } from '../policy/compile.js';
import { windowsFor } from './windows.js';

/** This key's budget as a tool may report it. */
export interface BudgetView {
  key_id: string;
  agent: string;
  run_id: string | null;
  policy: string;
  policy_version: number;
  expires_at: string | null;
  scopes: {
    scope: 'key' | 'policy';
    window: 'day' | 'hour';
    unit: 'usd_micros' | 'requests';
    cap: number;
    used: number;
    reserved: number;
    remaining: number;
    resets_at: string;
  }[];
  /** The pause that stops this key's calls (on the key, its run, agent or policy), or null. */
  paused: BudgetPause | null;
}

/** A pause as the agent is told it: what is paused, the wire that tripped (null: an operator) and its figures. */
export interface BudgetPause {
  scope_kind: 'key' | 'run' | 'agent' | 'policy';
  scope: string;
  wire: string | null;
  metric: string | null;
  figure: number | null;
  limit: number | null;
  window_seconds: number | null;
  paused_at: string;
  paused_by: string;
}

/** The earliest active pause on the key, its run, its agent or its policy (as admission's leash_active_pause). */
async function pauseOf(db: Db, key: KeyIdentity, policy: string): Promise<BudgetPause | null> {
  const { rows } = await sql<{
    scope_kind: BudgetPause['scope_kind'];
    scope: string;
    wire: string | null;
    details: Record<string, unknown>;
    paused_at: Date;
    paused_by: string;
  }>`
    select scope_kind, scope, wire, details, paused_at, paused_by from pauses
      where resumed_at is null
        and ((scope_kind = 'key' and scope = ${key.id}) or (scope_kind = 'run' and scope = ${key.run_id})
             or (scope_kind = 'agent' and scope = ${key.agent}) or (scope_kind = 'policy' and scope = ${policy}))
      order by paused_at, id limit 1`.execute(db);
  const r = rows[0];
  if (!r) return null;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return {
    scope_kind: r.scope_kind,
    scope: r.scope,
    wire: r.wire,
    metric: typeof r.details.metric === 'string' ? r.details.metric : null,
    figure: num(r.details.figure),
    limit: num(r.details.limit),
    window_seconds: num(r.details.window_seconds),
    paused_at: new Date(r.paused_at).toISOString(),
    paused_by: r.paused_by,
  };
}

export interface KeyIdentity {
  id: string;
  agent: string;
  run_id: string | null;
  expires_at: Date | null;
}

/** What a key may still spend and do in the current windows, per scope. */
export async function budgetView(
  db: Db,
  key: KeyIdentity,
  policy: CompiledPolicy,
  now = new Date(),
): Promise<BudgetView> {
  const windows = windowsFor(policy, key.id, now, true);
  const paused = await pauseOf(db, key, policy.name);
  const rows = windows.length
    ? await db
        .selectFrom('spend_windows')
        .select(['scope', 'kind', 'window_start', 'spent_micros', 'reserved_micros', 'requests'])
        .where((eb) =>
          eb.or(
            windows.map((w) =>
              eb.and([
                eb('scope', '=', w.scope),
                eb('kind', '=', w.kind),
                eb('window_start', '=', new Date(w.window_start)),
              ]),
            ),
          ),
        )
        .execute()
    : [];
  return {
    key_id: key.id,
    agent: key.agent,
    run_id: key.run_id,
    policy: policy.name,
    policy_version: policy.version,
    expires_at: key.expires_at?.toISOString() ?? null,
    scopes: windows.map((w) => {
      const row = rows.find((r) => r.scope === w.scope && r.kind === w.kind);
      const start = new Date(w.window_start);
      const usd = w.kind === 'usd_day';
      const used = usd ? (row?.spent_micros ?? 0) : (row?.requests ?? 0);
      const reserved = usd ? (row?.reserved_micros ?? 0) : 0;
      return {
        scope: w.scope.startsWith('key:') ? ('key' as const) : ('policy' as const),
        window: usd ? ('day' as const) : ('hour' as const),
        unit: usd ? ('usd_micros' as const) : ('requests' as const),
        cap: w.cap,
        used,
        reserved,
        remaining: Math.max(w.cap - used - reserved, 0),
        resets_at: new Date(start.getTime() + (usd ? 86_400_000 : 3_600_000)).toISOString(),
      };
    }),
    paused,
  };
}
