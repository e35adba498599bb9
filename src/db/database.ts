import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Config } from '../config/config.js';
import { ensureEmbedded } from './embedded.js';
import { readEmbedded } from './embedded-record.js';
import { migrateToLatest } from './migrate.js';
import type { Database } from './schema.js';

// int8 (bigint) columns hold micro-USD; they fit a JS number far past any real budget (2^53 micros = $9bn).
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

export type Db = Kysely<Database>;

/**
 * Makes the current transaction's commit wait for its WAL flush whatever synchronous_commit defaults to on the
 * server, database or role (left as it is unless off). For changes an operator relies on once the command returns:
 * a revoke, a rotate or a policy lost in a crash would let an agent do what it was just forbidden.
 */
export async function durableCommit(trx: Db): Promise<void> {
  await sql`select set_config('synchronous_commit', 'on', true) where current_setting('synchronous_commit') = 'off'`.execute(
    trx,
  );
}

/** A database handle plus what is needed to close it and to open LISTEN connections. */
export interface DbHandle {
  db: Db;
  pool: pg.Pool;
  url: string;
  /** A connected session outside the pool, on the same server (e.g. for LISTEN); the caller ends it. */
  connectSession(): Promise<pg.Client>;
  close(): Promise<void>;
}

/** The URL leash uses: DATABASE_URL, or the machine's shared embedded server (started if needed). */
export async function resolveDatabaseUrl(config: Config): Promise<string> {
  if (config.databaseUrl) return config.databaseUrl;
  return (await ensureEmbedded(config.home)).url;
}

/** Where a pool's new connections go; the embedded server's can move (a restart on another port). */
interface Target {
  url: string;
  /** Called after a connection attempt failed: picks up where the server is now. */
  refresh(): Promise<void>;
}

function fixedTarget(url: string): Target {
  return { url, refresh: () => Promise.resolve() };
}

/** The embedded server as LEASH_HOME/pg/server.json last recorded it, re-read whenever it cannot be reached. */
async function embeddedTarget(home: string): Promise<Target> {
  let reading: Promise<void> | undefined;
  const target: Target = {
    url: (await ensureEmbedded(home)).url,
    refresh: () =>
      (reading ??= readEmbedded(home)
        .then((server) => {
          if (server) target.url = server.url;
        })
        .catch(() => undefined)
        .finally(() => (reading = undefined))),
  };
  return target;
}

/** Opens a pool on `url` (or the configured database) and migrates it unless told not to. */
export async function openDatabase(
  config: Config,
  options: { url?: string; migrate?: boolean; poolMax?: number } = {},
): Promise<DbHandle> {
  const given = options.url ?? config.databaseUrl;
  const target = given ? fixedTarget(given) : await embeddedTarget(config.home);
  const url = target.url;
  // Each new connection goes where the target says now, so a long-lived pool follows a restarted server.
  const TargetClient = class extends pg.Client {
    constructor(options?: pg.ClientConfig) {
      super({ ...options, connectionString: target.url });
      // The server going away while a client is checked out (pg-pool listens only on idle ones) must not
      // crash the process: the query in flight rejects with the same error, and the pool drops the client.
      this.on('error', () => undefined);
    }
  };
  // Whatever the server, database or role default to, before a new client's first query (the pool hands it out only
  // after this; a connection this fails on is dropped, and the caller hears the error):
  // - read committed: admission re-reads a key after waiting for its lock and must see what committed meanwhile (a
  //   revoke). Where this cannot hold (a pooler that shares server sessions), admission refuses to run instead.
  // - ISO dates: the driver parses timestamps as ISO text (another DateStyle would misread expiry and revoke times).
  // Each is set only where the default differs: behind a transaction pooler a session-level SET stays on a shared
  // server session and reaches other clients, so with the usual defaults leash leaves no session state at all.
  const onConnect = async (client: pg.ClientBase): Promise<void> => {
    await client.query(
      `select set_config('default_transaction_isolation', 'read committed', false)
         where current_setting('default_transaction_isolation') <> 'read committed';
       select set_config('datestyle', 'ISO, MDY', false) where current_setting('datestyle') not like 'ISO%'`,
    );
  };
  const pool = new pg.Pool({
    max: options.poolMax ?? config.poolMax,
    connectionTimeoutMillis: config.poolWaitMs,
    idleTimeoutMillis: 30_000,
    Client: TargetClient,
    // pg-pool awaits it (a rejection ends the client); @types/pg declares it as returning void.
    // eslint-disable-next-line @typescript-eslint/no-misused-promises
    onConnect,
  });
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  const connect = () =>
    pool.connect().catch(async (error: unknown) => {
      await target.refresh();
      throw error;
    });
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool: { connect, end: () => pool.end() } }),
  });
  const handle: DbHandle = {
    db,
    pool,
    url,
    async connectSession() {
      const client = new TargetClient({ connectionTimeoutMillis: 5000 });
      try {
        await client.connect();
      } catch (error) {
        await target.refresh();
        throw error;
      }
      return client;
    },
    close: () => db.destroy(),
  };
  if (options.migrate !== false) {
    try {
      await migrateToLatest(db);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }
  return handle;
}

/** The URL with its password hidden, for printing. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '****';
    return u.toString();
  } catch {
    return 'postgres://(unparseable)';
  }
}
