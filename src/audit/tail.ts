import {
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type CompiledQuery,
} from 'kysely';
import pg from 'pg';
// For its side effect: the int8 type parser every leash connection relies on (micros as numbers).
import '../db/database.js';
import type { Database } from '../db/schema.js';
import { auditQuery, MAX_AUDIT_LIMIT, type AuditFilter, type AuditRow } from './query.js';

/** The channel the `audit_notify` trigger publishes every inserted audit row id on. */
export const AUDIT_CHANNEL = 'leash_audit';

export interface TailOptions {
  url: string;
  /** Applied in SQL to the backlog and to every notified row; `limit` and `order` are ignored. */
  filter: AuditFilter;
  /** How many of the newest matching rows to emit (oldest first) before following. Default 0. */
  backlog?: number;
  /** Called once per matching row, in ts order within each batch, never twice for one id. */
  onRow: (row: AuditRow) => void;
  /** Connection lost / back, for stderr. */
  onNotice?: (message: string) => void;
  /** Aborting stops the tail; the returned promise then resolves. */
  signal: AbortSignal;
}

// Compiles queries only; they run on the tail's own LISTEN connection.
const compiler = new Kysely<Database>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});

/** Rows seen recently, so a row that arrives both in the backlog and by notification prints once. */
class RecentIds {
  private readonly set = new Set<string>();
  constructor(private readonly max: number) {}
  has(id: string): boolean {
    return this.set.has(id);
  }
  add(id: string): void {
    this.set.add(id);
    if (this.set.size <= this.max) return;
    // A Set iterates in insertion order, so the first entry is the oldest.
    const oldest = this.set.values().next();
    if (!oldest.done) this.set.delete(oldest.value);
  }
}

// Rows commit in a different order than their ts; on reconnect, re-read this far back and de-duplicate.
const CATCH_UP_SLACK_MS = 10_000;
const BACKOFF_MS = [250, 500, 1_000, 2_000, 5_000];

/**
 * Follows the audit log live: LISTEN on a dedicated connection first, then emit the backlog, then every
 * newly inserted row that matches (fetched by id in batches, filtered in SQL). Reconnects with backoff,
 * catching up on rows written while disconnected. Rejects only if the first connection fails.
 */
export async function tailAudit(o: TailOptions): Promise<void> {
  const { filter, signal } = o;
  const seen = new RecentIds(50_000);
  const pending = new Set<string>();
  let client: pg.Client | undefined;
  let following = false;
  let flushing = false;
  let reconnecting: Promise<void> | undefined;
  // The newest ts emitted (or the server's clock at start): where a reconnect resumes reading.
  let cursor = new Date(0);
  const notice = (m: string) => o.onNotice?.(m);

  const run = async (c: pg.Client, q: CompiledQuery<AuditRow>) =>
    (await c.query<AuditRow>(q.sql, [...q.parameters])).rows;

  const emit = (rows: AuditRow[]) => {
    for (const row of rows) {
      if (seen.has(row.id)) continue;
      seen.add(row.id);
      if (row.ts > cursor) cursor = row.ts;
      if (!signal.aborted) o.onRow(row);
    }
  };

  const flush = async () => {
    if (flushing || !following) return;
    flushing = true;
    try {
      while (pending.size && client && following && !signal.aborted) {
        const ids = [...pending];
        pending.clear();
        const q = auditQuery(compiler, { ...filter, order: 'asc', limit: MAX_AUDIT_LIMIT }, ids).compile();
        try {
          emit(await run(client, q));
        } catch {
          // The connection is going away; reconnecting catches up on these rows by time.
          return;
        }
      }
    } finally {
      flushing = false;
    }
  };

  const open = async (): Promise<pg.Client> => {
    const c = new pg.Client({
      connectionString: o.url,
      connectionTimeoutMillis: 5_000,
      // Visible in pg_stat_activity, so an operator can tell what holds the LISTEN.
      application_name: 'leash audit tail',
    });
    // Kept for the client's whole life: an 'error' with no listener would crash the process.
    c.on('error', (error) => lost(c, error));
    c.on('end', () => lost(c));
    c.on('notification', (n) => {
      if (n.channel !== AUDIT_CHANNEL || !n.payload) return;
      pending.add(n.payload);
      void flush();
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${AUDIT_CHANNEL}`);
    } catch (error) {
      await c.end().catch(() => undefined);
      throw error;
    }
    return c;
  };

  const lost = (c: pg.Client, error?: Error) => {
    // Only the live, following connection triggers a reconnect; failures while starting are thrown.
    if (c !== client || !following || signal.aborted) return;
    following = false;
    client = undefined;
    c.removeAllListeners('notification');
    void c.end().catch(() => undefined);
    notice(`connection to the database lost${error ? ` (${error.message})` : ''}; reconnecting`);
    reconnecting = reconnect().finally(() => (reconnecting = undefined));
  };

  const reconnect = async () => {
    for (let attempt = 0; !signal.aborted; attempt++) {
      await sleep(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)] ?? 5_000, signal);
      if (signal.aborted) return;
      let c: pg.Client | undefined;
      try {
        c = await open();
        // Rows notified while disconnected were never delivered: re-read from the last one seen.
        const back = new Date(cursor.getTime() - CATCH_UP_SLACK_MS);
        const since = filter.since && filter.since > back ? filter.since : back;
        const q = auditQuery(compiler, { ...filter, since, order: 'asc', limit: MAX_AUDIT_LIMIT });
        const rows = await run(c, q.compile());
        if (signal.aborted) {
          await c.end().catch(() => undefined);
          return;
        }
        pending.clear();
        emit(rows);
        client = c;
        following = true;
        notice('reconnected; following the audit log again');
        void flush();
        return;
      } catch (error) {
        if (c) await c.end().catch(() => undefined);
        notice(`reconnect failed (${error instanceof Error ? error.message : String(error)}); retrying`);
      }
    }
  };

  if (signal.aborted) return;
  const first = await open();
  try {
    // LISTEN is already on, so nothing committed after these queries is missed; duplicates drop by id.
    const now = await first.query<{ now: Date }>('select clock_timestamp() as now');
    cursor = now.rows[0]?.now ?? new Date();
    const n = Math.min(Math.max(o.backlog ?? 0, 0), MAX_AUDIT_LIMIT);
    if (n > 0) {
      const q = auditQuery(compiler, { ...filter, order: 'desc', limit: n }).compile();
      emit((await run(first, q)).reverse());
    }
  } catch (error) {
    await first.end().catch(() => undefined);
    throw error;
  }
  client = first;
  following = true;
  void flush();

  await new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
  following = false;
  await reconnecting;
  const last = client;
  client = undefined;
  if (last) await last.end().catch(() => undefined);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
