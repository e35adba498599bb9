// Covers schema migrations: up on an empty database, a second run being a no-op, a database a newer leash migrated
// being refused with a message that says so, and every SQL function equal to its file in src/db/functions/, both on a
// database migrated from empty and on one upgraded from the last released schema.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { openDatabase, type DbHandle } from '../src/db/database.js';
import { FUNCTION_FILES, loadFunctionFiles } from '../src/db/function-files.js';
import { MigrationError, migrateTo, migrateToLatest } from '../src/db/migrate.js';
import { databaseFunctions, fileFunctions } from './support/function-files.js';
import { catalogConfig } from './support/config.js';

const name = `leash_t_${randomBytes(6).toString('hex')}`;
let handle: DbHandle | undefined;
/** The schema of the last release: an upgrade starts here. */
const LAST_RELEASED = '2026-12-06-0016-outcome-pending';
const FUNCTIONS_APPLIED = FUNCTION_FILES.map((f) => `functions/${f}.sql`);

afterAll(async () => {
  await handle?.close();
});

/** An empty database of its own, and a pool on it that does not migrate. */
async function emptyDatabase(dbName: string): Promise<DbHandle> {
  const admin = new pg.Client({ connectionString: inject('adminUrl') });
  await admin.connect();
  await admin.query(`create database ${dbName}`);
  await admin.end();
  const url = new URL(inject('adminUrl'));
  url.pathname = `/${dbName}`;
  return openDatabase(catalogConfig({}), { url: url.toString(), migrate: false, poolMax: 2 });
}

/** Every function in the database is one file's, defined exactly as the file defines it, and every file is there. */
async function expectFunctionsEqualFiles(db: DbHandle): Promise<void> {
  const inDatabase = await databaseFunctions(db.pool);
  const inFiles = await fileFunctions(db.pool, await loadFunctionFiles());
  expect([...inDatabase.keys()].sort()).toEqual([...inFiles.keys()].sort());
  for (const [fn, def] of inFiles) expect(inDatabase.get(fn), fn).toBe(def);
}

describe('migrations', () => {
  /** What the first run on the empty database applied: here, so every test finds it migrated, in any order. */
  let first: string[];
  beforeAll(async () => {
    handle = await emptyDatabase(name);
    first = await migrateToLatest(handle.db);
  });

  it('create every table on an empty database, then do nothing on a second run', async () => {
    expect(first).toEqual([
      '2026-11-22-0001-initial',
      '2026-11-22-0002-admission',
      '2026-11-22-0003-audit-usd-index',
      '2026-11-22-0004-hot-settle',
      '2026-11-23-0005-object-unique',
      '2026-11-23-0006-lean-audit',
      '2026-11-23-0007-one-trip',
      '2026-11-23-0008-approvals',
      '2026-11-23-0009-batch-admission',
      '2026-11-23-0010-indexed-batches',
      '2026-11-23-0011-leaner-batches',
      '2026-11-23-0012-admission-guards',
      '2026-12-06-0013-replays',
      '2026-12-06-0014-approval-cancel',
      '2026-12-06-0015-credential-version',
      '2026-12-06-0016-outcome-pending',
      '2026-12-06-0017-function-files',
      '2026-12-06-0018-operators',
      '2026-12-06-0019-tripwires',
      '2026-12-07-0020-shadow-policies',
      '2026-12-07-0021-oauth-bindings',
      '2026-12-07-0022-audit-partitions',
      ...FUNCTIONS_APPLIED,
    ]);
    const second = await migrateToLatest(handle!.db);
    expect(second).toEqual([]);

    const { rows } = await handle!.pool.query<{ table_name: string }>(
      `select table_name from information_schema.tables where table_schema = 'public' order by 1`,
    );
    expect(rows.map((r) => r.table_name)).toEqual(
      expect.arrayContaining([
        'audit_log',
        'policies',
        'policy_versions',
        'spend_windows',
        'vault_keys',
        'vendor_credentials',
      ]),
    );
    const idx = await handle!.pool.query<{ indexname: string }>(
      `select indexname from pg_indexes where tablename = 'audit_log'`,
    );
    expect(idx.rows.map((r) => r.indexname)).toEqual(
      expect.arrayContaining(['audit_by_run', 'audit_by_agent_ts', 'audit_denied_ts']),
    );
  });

  it('leave every function in the database equal to its file after a migration from empty', async () => {
    await expectFunctionsEqualFiles(handle!);
  });

  it('upgrade a database at the last released schema to the same functions, applying every file once', async () => {
    const upgraded = await emptyDatabase(`leash_t_${randomBytes(6).toString('hex')}`);
    try {
      expect((await migrateTo(upgraded.db, LAST_RELEASED)).at(-1)).toBe(LAST_RELEASED);
      expect(await migrateToLatest(upgraded.db)).toEqual([
        '2026-12-06-0017-function-files',
        '2026-12-06-0018-operators',
        '2026-12-06-0019-tripwires',
        '2026-12-07-0020-shadow-policies',
        '2026-12-07-0021-oauth-bindings',
        '2026-12-07-0022-audit-partitions',
        ...FUNCTIONS_APPLIED,
      ]);
      await expectFunctionsEqualFiles(upgraded);
      expect(await migrateToLatest(upgraded.db)).toEqual([]);
    } finally {
      await upgraded.close();
    }
  });

  it('refuse a database a newer leash migrated, saying so, and change nothing', async () => {
    const future = '2099-01-01-0001-from-a-newer-leash';
    await handle!.pool.query(`insert into leash_migrations (name, timestamp) values ($1, now()::text)`, [
      future,
    ]);
    try {
      const attempt = migrateToLatest(handle!.db);
      await expect(attempt).rejects.toBeInstanceOf(MigrationError);
      await expect(attempt).rejects.toThrow(
        /migrated by a newer leash \(it is at 2099-01-01-0001-from-a-newer-leash; this version knows up to 2026-/,
      );
    } finally {
      await handle!.pool.query(`delete from leash_migrations where name = $1`, [future]);
    }
    expect(await migrateToLatest(handle!.db)).toEqual([]);
  });

  it('run concurrently from two pools without failing or applying twice', async () => {
    const url = new URL(inject('adminUrl'));
    url.pathname = `/${name}`;
    const other = await openDatabase(catalogConfig({}), { url: url.toString(), migrate: false, poolMax: 2 });
    try {
      const results = await Promise.all([migrateToLatest(other.db), migrateToLatest(handle!.db)]);
      expect(results).toEqual([[], []]);
    } finally {
      await other.close();
    }
  });
});
