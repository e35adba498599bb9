// Paused scopes: a key, a run, an agent or a policy whose every call is refused `key_paused` until an operator resumes
// it. A tripwire pauses a scope inside the admission statement (src/db/functions/leash_tripwires.sql); operators pause
// and resume with these (the CLI, the admin API and the console are built on them).
import { sql } from 'kysely';
import { recordAction, type Actor } from '../audit/operator-actions.js';
import { durableCommit, type Db } from '../db/database.js';
import { KeyError } from './vault-keys.js';

export type PauseKind = 'key' | 'run' | 'agent' | 'policy';

/** What a pause stops: every call of this key, of the keys of this run or agent, or of the keys of this policy. */
export interface PauseScope {
  kind: PauseKind;
  /** The key id, run id, agent name or policy name. */
  id: string;
}

export interface PauseRow {
  id: number;
  scope_kind: PauseKind;
  scope: string;
  /** The tripwire that paused it, and its policy; null when an operator paused it. */
  wire: string | null;
  policy: string | null;
  /** A wire's figure, limit, window and the audit id of the call that tripped it; an operator's reason. */
  details: Record<string, unknown>;
  paused_at: Date;
  paused_by: string;
  resumed_at: Date | null;
  resumed_by: string | null;
}

const KINDS: readonly PauseKind[] = ['key', 'run', 'agent', 'policy'];
// The shapes leash mints and applies: key ids (keys/vault-keys.ts), run ids and agents, policy names.
const SHAPES: Readonly<Record<PauseKind, RegExp>> = {
  key: /^[a-z2-7]{12}$/,
  run: /^[\w.@:-]{1,128}$/,
  agent: /^[\w.@:-]{1,128}$/,
  policy: /^[a-z0-9][a-z0-9_.-]{0,62}$/,
};
const MAX_BY = 200;
const MAX_REASON = 500;

/** Checks a scope's shape; throws KeyError naming the field. */
export function checkScope(scope: PauseScope): PauseScope {
  if (!KINDS.includes(scope.kind)) throw new KeyError(`scope kind must be one of ${KINDS.join(', ')}`);
  if (typeof scope.id !== 'string' || !SHAPES[scope.kind].test(scope.id))
    throw new KeyError(
      scope.kind === 'key'
        ? 'key id must be the 12 characters after lsk_ (a-z, 2-7)'
        : scope.kind === 'policy'
          ? 'policy must be a policy name (lower-case letters, digits, "_", "-", ".")'
          : `${scope.kind} must be 1-128 characters of letters, digits, _ . @ : -`,
    );
  return scope;
}

/** Who acts: an Actor (recorded in operator_actions with its door) or a bare name (recorded as via `system`). */
function checkBy(by: string | Actor): Actor {
  const who = (typeof by === 'string' ? by : by.name).trim();
  if (!who || who.length > MAX_BY) throw new KeyError(`by must be 1-${MAX_BY} characters`);
  return { name: who, via: typeof by === 'string' ? 'system' : by.via };
}

/** The keys a scope covers that could still be admitted (not revoked, not expired), in lock order. */
function keysOf(scope: PauseScope) {
  const column = { key: 'id', run: 'run_id', agent: 'agent', policy: 'policy' } as const;
  return sql<{ id: string }>`
    select id from vault_keys
      where ${sql.ref(column[scope.kind])} = ${scope.id} and revoked_at is null
        and (expires_at is null or expires_at > clock_timestamp())
      order by id`;
}

/**
 * Pauses a scope: once this returns, no call of it is admitted on any replica until it is resumed. Each key's
 * admission lock is taken exclusively first (as revoke does), so this waits out admissions in flight and every later
 * one sees the pause; a call admitted but not yet durable (a call alone between its two transactions) is refused
 * `key_paused`. Pausing a scope that is already paused changes nothing and returns the pause in place (`paused:
 * false`). A key that does not exist is an error; a run, agent or policy may be paused before it has keys.
 */
export async function pause(
  db: Db,
  scope: PauseScope,
  by: string | Actor,
  reason?: string,
): Promise<{ paused: boolean; pause: PauseRow }> {
  checkScope(scope);
  const who = checkBy(by);
  const details = reason === undefined ? {} : { reason: reason.slice(0, MAX_REASON) };
  return db.transaction().execute(async (trx) => {
    await durableCommit(trx);
    const keys = (await keysOf(scope).execute(trx)).rows.map((r) => r.id);
    if (scope.kind === 'key' && !keys.length) {
      const known = await trx
        .selectFrom('vault_keys')
        .select('id')
        .where('id', '=', scope.id)
        .executeTakeFirst();
      if (!known) throw new KeyError(`no key '${scope.id}'`);
    }
    // One fixed order, so a pause and a revoke of overlapping sets cannot deadlock.
    await sql`select pg_advisory_xact_lock(leash_key_lock_id(s.id))
                from (select id from unnest(${keys}::text[]) as id order by id) as s`.execute(trx);
    const { rows } = await sql<PauseRow>`
      insert into pauses (scope_kind, scope, details, paused_by)
        values (${scope.kind}, ${scope.id}, ${JSON.stringify(details)}::jsonb, ${who.name})
        on conflict (scope_kind, scope) where resumed_at is null do nothing
        returning *`.execute(trx);
    if (rows[0]) {
      await recordAction(trx, who, 'key.pause', `${scope.kind}:${scope.id}`, {
        keys: keys.length,
        ...details,
      });
      return { paused: true, pause: rows[0] };
    }
    const active = await activePause(trx, scope);
    if (!active) throw new Error('pause: no active pause after a conflict'); // the conflict needs one
    return { paused: false, pause: active };
  });
}

/**
 * Resumes a paused scope: the next call is admitted (if nothing else refuses it), and the scope's tripwires count
 * only what comes after this moment. Returns the pause it ended, or undefined when the scope was not paused.
 */
export async function resume(db: Db, scope: PauseScope, by: string | Actor): Promise<PauseRow | undefined> {
  checkScope(scope);
  const who = checkBy(by);
  return db.transaction().execute(async (trx) => {
    await durableCommit(trx);
    const { rows } = await sql<PauseRow>`
      update pauses set resumed_at = clock_timestamp(), resumed_by = ${who.name}
        where scope_kind = ${scope.kind} and scope = ${scope.id} and resumed_at is null
        returning *`.execute(trx);
    const ended = rows[0];
    if (ended)
      await recordAction(
        trx,
        who,
        'key.resume',
        `${scope.kind}:${scope.id}`,
        ended.wire ? { wire: ended.wire } : {},
      );
    return ended;
  });
}

/** The scope's active pause, if any. */
export async function activePause(db: Db, scope: PauseScope): Promise<PauseRow | undefined> {
  const { rows } = await sql<PauseRow>`
    select * from pauses where scope_kind = ${scope.kind} and scope = ${scope.id} and resumed_at is null`.execute(
    db,
  );
  return rows[0];
}

/** Every active pause, oldest first (at most `limit`, default 1000). */
export async function listPaused(db: Db, limit = 1000): Promise<PauseRow[]> {
  const { rows } = await sql<PauseRow>`
    select * from pauses where resumed_at is null order by paused_at, id limit ${Math.max(1, Math.min(limit, 10_000))}`.execute(
    db,
  );
  return rows;
}
