import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { auditQuery, MAX_AUDIT_LIMIT, type AuditFilter, type AuditRow } from './query.js';

/**
 * What a watcher reports: `row` the first time a matching row is seen (backlog or newly committed), `settle`
 * when a row already reported as pending/unknown (or with its cost still pending) changed its outcome or cost.
 */
export type AuditEvent =
  { kind: 'row'; row: AuditRow } | { kind: 'settle'; row: AuditRow; previous: AuditRow };

export interface WatchOptions {
  /** How often to look for new rows (default 100 ms). */
  intervalMs?: number;
  /**
   * How far back each poll re-reads, de-duplicated by id: rows are stamped when their transaction starts but
   * become visible when it commits, in another order (default 2,000 ms).
   */
  lookbackMs?: number;
  /** How many of the newest matching rows to report (oldest first) before following. Default 0. */
  backlog?: number;
  /** Database lost / back, for stderr. */
  onNotice?: (message: string) => void;
}

/** A running watcher. */
export interface AuditWatch {
  /** Resolves once the backlog has been reported; rejects (and the watch stops) if the first reads fail. */
  readonly ready: Promise<void>;
  /** Stops polling; resolves when no poll is in flight. */
  stop(): Promise<void>;
}

// A row is settled once it is neither in flight nor waiting for the vendor's price (as leash_settle decides).
const unsettled = (r: AuditRow) =>
  r.decision === 'allowed' &&
  (r.outcome === 'pending' || r.outcome === 'unknown' || r.cost_status === 'pending');
const changed = (a: AuditRow, b: AuditRow) =>
  a.outcome !== b.outcome ||
  a.cost_status !== b.cost_status ||
  a.cost_micros !== b.cost_micros ||
  a.reserved_micros !== b.reserved_micros;

const MAX_TRACKED = 10_000;
const MAX_RECENT = 50_000;
// Rows still unsettled are re-read every poll while young (most settle within a second), then with backoff up
// to every few seconds (a Twilio price or a reconcile can take minutes).
const FAST_RECHECK_MS = 2_000;
const MAX_RECHECK_MS = 5_000;
const RECHECK_BATCH = 1_000;
const BACKOFF_MS = [250, 500, 1_000, 2_000, 5_000];

/**
 * The query one poll runs: matching rows stamped at or after `since` that were not already reported, oldest
 * first. Exported so the benchmark can EXPLAIN exactly this.
 */
export function pollQuery(db: Db, filter: AuditFilter, since: Date, exclude: readonly string[]) {
  const from = filter.since && filter.since > since ? filter.since : since;
  const q = auditQuery(db, {
    ...filter,
    since: from,
    afterId: undefined,
    order: 'asc',
    limit: MAX_AUDIT_LIMIT,
  });
  return exclude.length ? q.where(sql<boolean>`id <> all(${[...exclude]}::uuid[])`) : q;
}

/**
 * Follows the audit log by polling, with no NOTIFY on the commit path (a per-row pg_notify serialised
 * concurrent commits; see BENCHMARKS.md): every `intervalMs` it reads rows stamped in the last `lookbackMs`
 * that it has not reported yet, and re-reads by primary key the rows it reported while they were unsettled,
 * reporting them again when they settle. Survives the database going away (reports a notice, backs off,
 * catches up from where it was). Works on any pool, so the CLI tail and an admin stream share it.
 */
export function watchAudit(
  db: Db,
  filter: AuditFilter,
  onEvent: (event: AuditEvent) => void,
  o: WatchOptions = {},
): AuditWatch {
  const intervalMs = o.intervalMs ?? 100;
  const lookbackMs = o.lookbackMs ?? 2_000;
  // Reported rows stamped at or after `since`, id → ts: the poll excludes them, so each is read once.
  const recent = new Map<string, number>();
  // Reported rows still unsettled: the last version reported, when to look again, and the current backoff.
  const tracked = new Map<string, { row: AuditRow; since: number; due: number; wait: number }>();
  let since = new Date(0);
  // The database's clock minus ours, so `since` follows the clock that stamps the rows.
  let skewMs = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> = Promise.resolve();
  let failures = 0;

  const emit = (e: AuditEvent) => {
    if (!stopped) onEvent(e);
  };
  const track = (row: AuditRow) => {
    if (!unsettled(row)) return;
    const now = Date.now();
    tracked.set(row.id, { row, since: now, due: now + intervalMs, wait: intervalMs });
    // A Map iterates in insertion order: past the cap, stop following the oldest.
    if (tracked.size > MAX_TRACKED) tracked.delete(tracked.keys().next().value ?? '');
  };
  const report = (row: AuditRow) => {
    recent.set(row.id, row.ts.getTime());
    if (recent.size > MAX_RECENT) recent.delete(recent.keys().next().value ?? '');
    track(row);
    emit({ kind: 'row', row });
  };

  const readClock = async () => {
    const t0 = Date.now();
    const { rows } = await sql<{ now: Date }>`select clock_timestamp() as now`.execute(db);
    const t1 = Date.now();
    skewMs = (rows[0]?.now.getTime() ?? t1) - (t0 + t1) / 2;
  };

  const pollNew = async () => {
    for (;;) {
      const startedAt = Date.now() + skewMs;
      const exclude = [...recent.keys()];
      const rows = await pollQuery(db, filter, since, exclude).execute();
      for (const row of rows) if (!recent.has(row.id)) report(row);
      const full = rows.length >= MAX_AUDIT_LIMIT;
      // A full page resumes at its last row; otherwise at the lookback before this poll started.
      const next = full ? (rows.at(-1)?.ts ?? since) : new Date(startedAt - lookbackMs);
      if (next > since) since = next;
      for (const [id, ts] of recent) if (ts < since.getTime()) recent.delete(id);
      if (!full || stopped) return;
    }
  };

  const recheck = async () => {
    const now = Date.now();
    const due: string[] = [];
    for (const [id, t] of tracked) {
      if (t.due <= now) due.push(id);
      if (due.length >= RECHECK_BATCH) break;
    }
    if (!due.length) return;
    const rows = await auditQuery(db, { order: 'asc', limit: MAX_AUDIT_LIMIT }, due).execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    for (const id of due) {
      const t = tracked.get(id);
      const row = byId.get(id);
      if (!t) continue;
      if (!row) {
        tracked.delete(id); // deleted (a test database, a retention job): nothing more to report
        continue;
      }
      const moved = changed(t.row, row);
      if (moved) emit({ kind: 'settle', row, previous: t.row });
      if (!unsettled(row)) tracked.delete(id);
      else {
        const young = now - t.since < FAST_RECHECK_MS;
        const wait = moved || young ? intervalMs : Math.min(t.wait * 2, MAX_RECHECK_MS);
        tracked.set(id, { row, since: moved ? now : t.since, due: now + wait, wait });
      }
    }
  };

  const tick = async () => {
    try {
      if (failures > 0) await readClock();
      await pollNew();
      await recheck();
      if (failures > 0) o.onNotice?.('reading the audit log again');
      failures = 0;
    } catch (error) {
      if (failures === 0)
        o.onNotice?.(
          `cannot read the audit log (${error instanceof Error ? error.message : String(error)}); retrying`,
        );
      failures++;
    }
  };

  const schedule = () => {
    if (stopped) return;
    const wait = failures ? (BACKOFF_MS[Math.min(failures - 1, BACKOFF_MS.length - 1)] ?? 5_000) : intervalMs;
    timer = setTimeout(() => {
      inFlight = tick().finally(schedule);
    }, wait);
  };

  const start = async () => {
    await readClock();
    since = new Date(Date.now() + skewMs - lookbackMs);
    if (filter.since && filter.since > since) since = filter.since;
    // Rows already in the lookback window are old news: remember them so the first poll skips them.
    for (const r of await pollQuery(db, filter, since, []).execute()) recent.set(r.id, r.ts.getTime());
    const n = Math.min(Math.max(Math.trunc(o.backlog ?? 0), 0), MAX_AUDIT_LIMIT);
    if (n > 0) {
      const rows = await auditQuery(db, { ...filter, order: 'desc', limit: n }).execute();
      for (const row of rows.reverse()) {
        if (recent.has(row.id)) recent.delete(row.id); // re-added by report, newest last
        report(row);
      }
    }
  };

  const ready = (inFlight = start()).then(
    () => schedule(),
    (error: unknown) => {
      stopped = true;
      throw error;
    },
  );

  return {
    ready,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await inFlight.catch(() => undefined);
    },
  };
}
