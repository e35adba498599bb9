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
  };
}
