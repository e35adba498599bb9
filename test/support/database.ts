// Gives each test file its own fresh, migrated database cloned from the run's template.
import { randomBytes } from 'node:crypto';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { inject } from 'vitest';
import { openDatabase, type DbHandle } from '../../src/db/database.js';
import type { Database } from '../../src/db/schema.js';
import { catalogConfig } from './config.js';

export interface TestDatabase extends DbHandle {
  name: string;
  /** Opens another independent pool on the same database (a second replica). */
  openPool(poolMax?: number): Promise<DbHandle>;
}

/** Creates a new database from the migrated template and opens a pool on it. */
export async function freshDatabase(poolMax = 10): Promise<TestDatabase> {
  const adminUrl = inject('adminUrl');
  const template = inject('templateDb');
  const name = `leash_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name} template ${template}`);
    // Admission gives up on a lock after leash.admission_lock_timeout (10 s unless set). On a busy machine 200
    // calls queued on one window row can wait longer than that; tests of exact caps wait as long as they need
    // (tests of the bound itself set their own, per session).
    await admin.query(`alter database ${name} set leash.admission_lock_timeout = '120s'`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const config = catalogConfig({});
  const handle = await openDatabase(config, { url: url.toString(), poolMax, migrate: false });
  return {
    ...handle,
    name,
    openPool: (max = 10) => openDatabase(config, { url: url.toString(), poolMax: max, migrate: false }),
  };
}

/**
 * Plain sessions on `url` that start with these settings, as a server's, database's or role's defaults would give
 * them, and without what leash's own connections set for themselves. Destroy it when done.
 */
export function sessionsWith(url: string, settings: Record<string, string>): Kysely<Database> {
  const options = Object.entries(settings)
    .map(([name, value]) => `-c ${name}=${value.replaceAll(' ', '\\ ')}`)
    .join(' ');
  return new Kysely<Database>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2, options }) }),
  });
}
