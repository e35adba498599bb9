import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Config } from '../config/config.js';
import { ensureEmbedded } from './embedded.js';
import { migrateToLatest } from './migrate.js';
import type { Database } from './schema.js';

// int8 (bigint) columns hold micro-USD; they fit a JS number far past any real budget (2^53 micros = $9bn).
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number.parseInt(v, 10));

export type Db = Kysely<Database>;

/** A database handle plus what is needed to close it and to open LISTEN connections. */
export interface DbHandle {
  db: Db;
  pool: pg.Pool;
  url: string;
  close(): Promise<void>;
}

/** The URL leash uses: DATABASE_URL, or the machine's shared embedded server (started if needed). */
export async function resolveDatabaseUrl(config: Config): Promise<string> {
  if (config.databaseUrl) return config.databaseUrl;
  return (await ensureEmbedded(config.home)).url;
}

/** Opens a pool on `url` (or the configured database) and migrates it unless told not to. */
export async function openDatabase(
  config: Config,
  options: { url?: string; migrate?: boolean; poolMax?: number } = {},
): Promise<DbHandle> {
  const url = options.url ?? (await resolveDatabaseUrl(config));
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolMax ?? config.poolMax,
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const handle: DbHandle = {
    db,
    pool,
    url,
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
