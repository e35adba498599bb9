// The operator's key operations, shared by the admin API, the console and the CLI: list keys, revoke, pause and
// resume, and alert.
import { sql } from 'kysely';
import type { Actor } from '../audit/operator-actions.js';
import type { Db } from '../db/database.js';
import { listPaused, pause, resume, type PauseRow, type PauseScope } from '../keys/pauses.js';
import { listKeys, revokeKeys, type KeyRow, type RevokeTarget } from '../keys/vault-keys.js';
import type { Alerts } from './alerts.js';

/** What an operator names to revoke: exactly one of a key id, an agent or a run (checked by each door's schema). */
export interface RevokeChoice {
  key_id?: string | undefined;
  agent?: string | undefined;
  run_id?: string | undefined;
}

/** Which keys a filter lists (newest first, at most 1000). */
export interface KeyFilter {
  agent?: string;
  runId?: string;
  active?: boolean;
}

/** The keys an operator sees: `GET /admin/keys`, the console's Keys panel. */
export function operatorKeys(db: Db, filter: KeyFilter = {}): Promise<KeyRow[]> {
  return listKeys(db, filter);
}

/** The revoke target a door's body names. */
export function revokeTarget(choice: RevokeChoice): RevokeTarget {
  return choice.key_id
    ? { id: choice.key_id }
    : choice.agent
      ? { agent: choice.agent }
      : { runId: choice.run_id ?? '' };
}

/**
 * Revokes a key, an agent or a run for an operator (recording who) and alerts `key_revoked` naming them and the
 * door; returns the ids.
 */
export async function operatorRevoke(
  db: Db,
  target: RevokeTarget,
  o: { reason: string; by: Actor; alerts?: Alerts | undefined },
): Promise<string[]> {
  const revoked = await revokeKeys(db, target, o.reason, o.by);
  if (revoked.length)
    o.alerts?.notify({
      type: 'key_revoked',
      key_ids: revoked,
      by: o.by.name,
      via: o.by.via,
      reason: o.reason,
    });
  return revoked;
}

/** What an operator names to pause or resume: exactly one of a key id, a run, an agent or a policy. */
export interface PauseChoice {
  key_id?: string | undefined;
  run_id?: string | undefined;
  agent?: string | undefined;
  policy?: string | undefined;
}

/** The pause scope a door's body or flags name (exactly one is checked by each door). */
export function pauseScope(choice: PauseChoice): PauseScope {
  return choice.key_id
    ? { kind: 'key', id: choice.key_id }
    : choice.run_id
      ? { kind: 'run', id: choice.run_id }
      : choice.agent
        ? { kind: 'agent', id: choice.agent }
        : { kind: 'policy', id: choice.policy ?? '' };
}

/** A pause as the doors show it: the wire's figures flattened beside who paused it and when. */
export interface PauseView {
  scope_kind: PauseScope['kind'];
  scope: string;
  /** The tripwire that paused it; null when an operator did. */
  wire: string | null;
  policy: string | null;
  metric: string | null;
  figure: number | null;
  limit: number | null;
  window_seconds: number | null;
  reason: string | null;
  paused_at: string;
  paused_by: string;
  resumed_at: string | null;
  resumed_by: string | null;
}

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const text = (v: unknown) => (typeof v === 'string' ? v : null);

export function pauseView(p: PauseRow): PauseView {
  const d = p.details;
  return {
    scope_kind: p.scope_kind,
    scope: p.scope,
    wire: p.wire,
    policy: p.policy,
    metric: text(d.metric),
    figure: num(d.figure),
    limit: num(d.limit),
    window_seconds: num(d.window_seconds),
    reason: text(d.reason),
    paused_at: new Date(p.paused_at).toISOString(),
    paused_by: p.paused_by,
    resumed_at: p.resumed_at ? new Date(p.resumed_at).toISOString() : null,
    resumed_by: p.resumed_by,
  };
}

/**
 * Pauses a scope for an operator (recorded in operator_actions with the change) and alerts `operator_action`
 * when it was not already paused. A key that does not exist throws KeyError.
 */
export async function operatorPause(
  db: Db,
  scope: PauseScope,
  o: { by: Actor; reason?: string | undefined; alerts?: Alerts | undefined },
): Promise<{ paused: boolean; pause: PauseView }> {
  const r = await pause(db, scope, o.by, o.reason);
  if (r.paused)
    o.alerts?.notify({
      type: 'operator_action',
      action: 'key.pause',
      target: `${scope.kind}:${scope.id}`,
      by: o.by.name,
      via: o.by.via,
    });
  return { paused: r.paused, pause: pauseView(r.pause) };
}

/** Resumes a scope for an operator; returns the pause it ended (undefined: it was not paused). */
export async function operatorResume(
  db: Db,
  scope: PauseScope,
  o: { by: Actor; alerts?: Alerts | undefined },
): Promise<PauseView | undefined> {
  const ended = await resume(db, scope, o.by);
  if (ended)
    o.alerts?.notify({
      type: 'operator_action',
      action: 'key.resume',
      target: `${scope.kind}:${scope.id}`,
      by: o.by.name,
      via: o.by.via,
    });
  return ended && pauseView(ended);
}

/** Every active pause, oldest first. */
export async function operatorPauses(db: Db): Promise<PauseView[]> {
  return (await listPaused(db)).map(pauseView);
}

/** A key as operators list it: `status` is `paused` while the key, its run, agent or policy is paused. */
export type KeyWithPause = Omit<KeyRow, 'status'> & {
  status: KeyRow['status'] | 'paused';
  /** The pause that stops it (the earliest when several do), as admission sees it. */
  pause: { scope_kind: string; scope: string; wire: string | null; paused_at: string } | null;
};

/** Marks the active keys that a pause stops (one query, the same function admission uses). */
export async function withPauses(db: Db, keys: KeyRow[]): Promise<KeyWithPause[]> {
  const active = keys.filter((k) => k.status === 'active').map((k) => k.id);
  const pauses = new Map<string, KeyWithPause['pause']>();
  if (active.length) {
    const { rows } = await sql<{ id: string; pause: KeyWithPause['pause'] }>`
      select id, leash_active_pause(id, run_id, agent, policy) as pause
        from vault_keys where id = any(${active}::text[])`.execute(db);
    for (const r of rows) if (r.pause) pauses.set(r.id, r.pause);
  }
  return keys.map((k) => {
    const p = pauses.get(k.id) ?? null;
    return { ...k, status: p ? 'paused' : k.status, pause: p };
  });
}
