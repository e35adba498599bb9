// Who changed what: one operator_actions row per change an operator makes, written inside the change's own
// transaction (no row, no change), and read back by `leash audit query|tail --operator-actions` and /admin/actions.
import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { ActionDoor, ActionKind } from './action-words.js';

/**
 * Who acted. `name` is an operator's name when a token proved it (admin API, console), `admin` for the break-glass
 * LEASH_ADMIN_TOKEN, or what the CLI was told (`--by`, LEASH_OPERATOR, else `cli:<os user>`): the CLI reaches the
 * database directly, so its names are taken on trust.
 */
export interface Actor {
  readonly name: string;
  readonly via: ActionDoor;
}

/** Recorded when a caller names no one. */
export const SYSTEM_ACTOR: Actor = Object.freeze({ name: 'system', via: 'system' });

/** Longest actor name and target kept (the table checks both). */
export const MAX_ACTOR = 200;
const MAX_TARGET = 300;

/** A name as stored: at most MAX_ACTOR characters, never empty. */
export function actorName(actor: Actor): string {
  return actor.name.slice(0, MAX_ACTOR) || 'system';
}

/**
 * Records one action inside the caller's transaction, so the change and its row commit together or not at all.
 * `detail` must hold no secret (ids, names, versions, reasons).
 */
export async function recordAction(
  trx: Db,
  actor: Actor,
  action: ActionKind,
  target: string,
  detail: Record<string, unknown> = {},
): Promise<void> {
  await trx
    .insertInto('operator_actions')
    .values({
      actor: actorName(actor),
      via: actor.via,
      action,
      target: target.slice(0, MAX_TARGET) || '-',
      detail: JSON.stringify(detail),
    })
    .execute();
}

/** An action as operators read it. */
export interface OperatorAction {
  id: string;
  ts: Date;
  actor: string;
  via: string;
  action: string;
  target: string;
  detail: Record<string, unknown>;
}

/** Which actions to read; every field narrows. */
export interface ActionFilter {
  actor?: string | undefined;
  action?: ActionKind | undefined;
  /** Actions on this target (`key:<id>`, `policy:<name>`, …) or, without a colon, any target ending `:<this>`. */
  target?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  /** Default 100, at most 10 000. */
  limit?: number | undefined;
  /** `desc` (newest first, the default) or `asc`. */
  order?: 'asc' | 'desc' | undefined;
  /** Only rows with a larger id (tail's cursor). */
  afterId?: string | undefined;
}

export const MAX_ACTIONS_LIMIT = 10_000;

/** Operator actions matching `filter`, newest first unless `order: 'asc'`. */
export async function queryActions(db: Db, filter: ActionFilter = {}): Promise<OperatorAction[]> {
  const dir = filter.order ?? 'desc';
  const limit = Math.min(Math.max(Math.trunc(filter.limit ?? 100), 1), MAX_ACTIONS_LIMIT);
  let q = db
    .selectFrom('operator_actions')
    .select(['ts', 'actor', 'via', 'action', 'target', 'detail'])
    .select(sql<string>`id::text`.as('id'));
  if (filter.actor !== undefined) q = q.where('actor', '=', filter.actor);
  if (filter.action !== undefined) q = q.where('action', '=', filter.action);
  if (filter.target !== undefined) {
    const t = filter.target;
    q = t.includes(':')
      ? q.where('target', '=', t)
      : q.where((eb) =>
          eb.or([eb('target', '=', t), eb('target', 'like', `%:${t.replace(/[\\%_]/g, '\\$&')}`)]),
        );
  }
  if (filter.since) q = q.where('ts', '>=', filter.since);
  if (filter.until) q = q.where('ts', '<', filter.until);
  if (filter.afterId !== undefined) {
    if (!/^\d{1,19}$/.test(filter.afterId)) throw new RangeError('afterId must be an operator action id');
    q = q.where('id', '>', filter.afterId);
  }
  return q.orderBy('ts', dir).orderBy('id', dir).limit(limit).execute();
}

/** A running watch over operator actions. */
export interface ActionWatch {
  /** Resolves once the watch is following (the lookback read); rejects if that first read fails. */
  readonly ready: Promise<void>;
  /** Stops polling; resolves when no poll is in flight. */
  stop(): Promise<void>;
}

/** How far back each poll re-reads: rows become visible when their transaction commits, not in id order. */
const LOOKBACK_MS = 5_000;

/**
 * Reports each operator action matching `filter` that commits after the watch starts, once, oldest first. Polls
 * (every `intervalMs`, default 250 ms; no NOTIFY), re-reading a short lookback by the database's clock and
 * skipping ids already reported. A failed poll is tried again at the next interval.
 */
export function watchActions(
  db: Db,
  filter: ActionFilter,
  onAction: (action: OperatorAction) => void,
  o: { intervalMs?: number } = {},
): ActionWatch {
  const reported = new Map<string, number>();
  let since = new Date(0);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  const read = (from: Date) =>
    queryActions(db, { ...filter, since: from, order: 'asc', limit: MAX_ACTIONS_LIMIT, afterId: undefined });
  const now = async () =>
    (await sql<{ now: Date }>`select clock_timestamp() as now`.execute(db)).rows[0]?.now ?? new Date();

  const poll = async () => {
    const polledAt = await now();
    for (const a of await read(since))
      if (!reported.has(a.id)) {
        reported.set(a.id, a.ts.getTime());
        if (!stopped) onAction(a);
      }
    since = new Date(polledAt.getTime() - LOOKBACK_MS);
    for (const [id, ts] of reported) if (ts < since.getTime()) reported.delete(id);
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      inFlight = poll()
        .catch(() => undefined)
        .finally(schedule);
    }, o.intervalMs ?? 250);
  };
  const start = async () => {
    since = new Date((await now()).getTime() - LOOKBACK_MS);
    // What is already in the lookback is old news.
    for (const a of await read(since)) reported.set(a.id, a.ts.getTime());
  };
  const ready = (inFlight = start()).then(schedule, (error: unknown) => {
    stopped = true;
    throw error;
  });
  return {
    ready,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await inFlight.catch(() => undefined);
    },
  };
}
