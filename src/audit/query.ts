import { sql, type Kysely, type Selectable } from 'kysely';
import type { AuditLogTable, Database, Decision, Outcome } from '../db/schema.js';

/** The columns an operator reads; the redacted request, budget and metadata stay in psql. */
export const AUDIT_COLUMNS = [
  'id',
  'ts',
  'agent',
  'run_id',
  'key_id',
  'tool',
  'decision',
  'reason',
  'outcome',
  'cost_micros',
  'reserved_micros',
  'cost_status',
  'amount',
  'currency',
  'vendor_object_id',
  'latency_ms',
  'sandbox',
  'policy',
  'policy_version',
] as const;

/** A call held for a person: its request, and who decided it, when and why (from the row's metadata). */
export interface AuditApproval {
  id: string;
  status: string;
  decided_by?: string | null;
  decided_at?: string | null;
  note?: string | null;
  expires_at?: string | null;
}

export type AuditRow = Pick<Selectable<AuditLogTable>, (typeof AUDIT_COLUMNS)[number]> & {
  approval: AuditApproval | null;
  /** Set on a replay (the vendor answered with an earlier call's object, $0 here): the row that counts it. */
  replay_of: string | null;
};

export const DEFAULT_AUDIT_LIMIT = 100;
export const MAX_AUDIT_LIMIT = 10_000;

/** Which audit rows to read. Every field narrows; none widens. */
export interface AuditFilter {
  agent?: string | undefined;
  run?: string | undefined;
  keyId?: string | undefined;
  tool?: string | undefined;
  decision?: Decision | undefined;
  /** What became of the call: `unknown` lists calls the vendor may have acted on, waiting for reconcile. */
  outcome?: Outcome | undefined;
  /** Inclusive. */
  since?: Date | undefined;
  /** Exclusive. */
  until?: Date | undefined;
  /** Rows whose admitted USD value (usd_micros) is at least this. */
  minUsdMicros?: number | undefined;
  /** Default 100, at most 10 000. */
  limit?: number | undefined;
  /** Cursor: only rows after this id in the chosen order. */
  afterId?: string | undefined;
  /** `desc` (newest first, the default) or `asc` (for tail). */
  order?: 'asc' | 'desc' | undefined;
}

/** Every outcome a row can have (`none`: the call was refused or held, so never made). */
export const OUTCOMES: readonly Outcome[] = ['pending', 'succeeded', 'failed', 'unknown', 'none'];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The audit query for a filter, not yet executed (tail compiles it for its own connection; tests EXPLAIN it).
 * Each common question is served by an index: run → audit_by_run, agent (+time) → audit_by_agent_ts,
 * denied by time → audit_denied_ts, tool (+time, +amount) → audit_tool_ts_usd_v2, time alone → audit_by_ts.
 * `ids` restricts to those rows (primary key), as tail does for the ids a notification named.
 */
export function auditQuery(db: Kysely<Database>, filter: AuditFilter, ids?: readonly string[]) {
  const dir = filter.order ?? 'desc';
  const limit = Math.min(Math.max(Math.trunc(filter.limit ?? DEFAULT_AUDIT_LIMIT), 1), MAX_AUDIT_LIMIT);
  let q = db
    .selectFrom('audit_log')
    .select(AUDIT_COLUMNS)
    .select(sql<AuditApproval | null>`metadata->'approval'`.as('approval'))
    .select(sql<string | null>`metadata->>'replay_of'`.as('replay_of'));
  if (ids) q = q.where('id', '=', sql<string>`any(${[...ids]}::uuid[])`);
  if (filter.agent !== undefined) q = q.where('agent', '=', filter.agent);
  if (filter.run !== undefined) q = q.where('run_id', '=', filter.run);
  if (filter.keyId !== undefined) q = q.where('key_id', '=', filter.keyId);
  if (filter.tool !== undefined) q = q.where('tool', '=', filter.tool);
  if (filter.decision !== undefined) {
    if (filter.decision !== 'allowed' && filter.decision !== 'denied' && filter.decision !== 'held')
      throw new RangeError(`decision must be 'allowed', 'denied' or 'held'`);
    // A literal, not a parameter, so the planner can match the partial index `where decision = 'denied'`.
    q = q.where('decision', '=', sql.lit(filter.decision));
  }
  if (filter.outcome !== undefined) {
    if (!OUTCOMES.includes(filter.outcome))
      throw new RangeError(`outcome must be one of ${OUTCOMES.join(', ')}`);
    q = q.where('outcome', '=', filter.outcome);
    // Unsettled rows are few and all listed in audit_unsettled: found from there, not by scanning the log.
    if (filter.outcome === 'pending' || filter.outcome === 'unknown')
      q = q.where('id', 'in', db.selectFrom('audit_unsettled').select('audit_unsettled.id'));
  }
  if (filter.since) q = q.where('ts', '>=', filter.since);
  if (filter.until) q = q.where('ts', '<', filter.until);
  const min = filter.minUsdMicros;
  // The admitted USD value, indexed with tool and ts, so "tool over $X in a day" is answered inside the index.
  if (min !== undefined) q = q.where('usd_micros', '>=', min);
  if (filter.afterId !== undefined) {
    const after = filter.afterId;
    if (!UUID.test(after)) throw new RangeError('afterId must be an audit row id (a uuid)');
    const cursorTs = () => db.selectFrom('audit_log as c').select('c.ts').where('c.id', '=', after);
    const cmp = dir === 'desc' ? '<' : '>';
    // `ts <= cursor` alone is what lets the (…, ts) indexes bound the scan; the `or` breaks ties on id.
    q = q.where((eb) =>
      eb.and([
        eb('ts', dir === 'desc' ? '<=' : '>=', cursorTs()),
        eb.or([eb('ts', cmp, cursorTs()), eb('id', cmp, after)]),
      ]),
    );
  }
  return q.orderBy('ts', dir).orderBy('id', dir).limit(limit);
}

/** Audit rows matching `filter`, newest first unless `order: 'asc'`. */
export async function queryAudit(db: Kysely<Database>, filter: AuditFilter = {}): Promise<AuditRow[]> {
  return auditQuery(db, filter).execute();
}

/** A time flag the user wrote that is none of the accepted forms. */
export class TimeInputError extends Error {
  override name = 'TimeInputError';
  constructor(
    readonly flag: string,
    readonly input: string,
  ) {
    super(
      `${flag}: expected an ISO time (2026-11-20T14:30:00Z, offsets up to ±23:59), a date (2026-11-20, UTC) ` +
        `or a time ago (45s, 30m, 2h, 7d), between the years 1 and 9999; ` +
        `got '${input.length > 40 ? `${input.slice(0, 40)}…` : input}'`,
    );
  }
}

const RELATIVE = /^(\d{1,9})\s*(s|m|h|d|w)$/;
const UNIT_MS: Readonly<Record<string, number>> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * Parses a time flag: an ISO timestamp (no offset means UTC), a date (UTC midnight), or a relative
 * `30m` / `2h` / `7d` meaning that long before `now`. Throws TimeInputError naming `flag`.
 */
export function parseTime(input: string, flag = '--since', now: Date = new Date()): Date {
  const s = input.trim();
  const rel = RELATIVE.exec(s);
  if (rel) return storable(now.getTime() - Number(rel[1]) * (UNIT_MS[rel[2] ?? ''] ?? 0), flag, input);
  const m = ISO.exec(s);
  if (!m) throw new TimeInputError(flag, input);
  const [y, mo, d, h, mi, sec] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((v) => Number(v ?? 0));
  const ms = Number((m[7] ?? '').padEnd(3, '0').slice(0, 3));
  const check = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not read years 0..99 as 1900..1999.
  check.setUTCFullYear(y ?? 0, (mo ?? 1) - 1, d ?? 1);
  check.setUTCHours(h ?? 0, mi ?? 0, sec ?? 0, ms);
  const utc = check.getTime();
  // Date.UTC rolls 2026-02-31 over into March; a real calendar time round-trips.
  if (
    check.getUTCFullYear() !== y ||
    check.getUTCMonth() + 1 !== mo ||
    check.getUTCDate() !== d ||
    check.getUTCHours() !== h ||
    check.getUTCMinutes() !== mi ||
    check.getUTCSeconds() !== sec
  )
    throw new TimeInputError(flag, input);
  const offset = offsetMs(m[8]);
  if (offset === undefined) throw new TimeInputError(flag, input);
  return storable(utc - offset, flag, input);
}

// Years 1..9999: what the ISO form can write, and well inside both Date's and Postgres's timestamp range.
const MIN_MS = Date.parse('0001-01-01T00:00:00Z');
const MAX_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

function storable(ms: number, flag: string, input: string): Date {
  if (!Number.isFinite(ms) || ms < MIN_MS || ms > MAX_MS) throw new TimeInputError(flag, input);
  return new Date(ms);
}

/** A UTC offset in ms, or undefined when it is no real offset (hours over 23 or minutes over 59, as RFC 3339). */
function offsetMs(zone: string | undefined): number | undefined {
  if (!zone || zone.toUpperCase() === 'Z') return 0;
  const digits = zone.slice(1).replace(':', '');
  const hours = Number(digits.slice(0, 2));
  const mins = Number(digits.slice(2) || 0);
  if (hours > 23 || mins > 59) return undefined;
  return (zone.startsWith('-') ? -1 : 1) * (hours * 60 + mins) * 60_000;
}
