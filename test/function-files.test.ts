// Covers SQL functions as code (src/db/functions/*.sql): the list matches the folder, no file brings back a function a
// migration dropped, a changed file is applied on the next migrate and an unchanged one is not, an older leash does not
// put back a body a newer one replaced, a failing file changes nothing, and files are applied under the migrator's lock.
import { readdir, readFile } from 'node:fs/promises';
import { PostgresAdapter } from 'kysely';
import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import {
  FUNCTION_FILES,
  FUNCTIONS_DIR,
  applyFunctionFiles,
  functionFile,
  loadFunctionFiles,
  type FunctionFile,
} from '../src/db/function-files.js';
import { LATEST_MIGRATION, migrateToLatest } from '../src/db/migrate.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { databaseFunctions, fileFunctions } from './support/function-files.js';

const MIGRATIONS_DIR = new URL('../src/db/migrations/', import.meta.url);

/** The real files, with one replaced by other text. */
async function filesWith(name: string, edit: (text: string) => string): Promise<FunctionFile[]> {
  return (await loadFunctionFiles()).map((f) => (f.name === name ? functionFile(name, edit(f.text)) : f));
}

const LOCK_WINDOW = 'leash_lock_window(p_scope text, p_kind text, p_start timestamp with time zone)';

/** An earlier body of leash_lock_window: the same function with one more comment. */
const earlier = (text: string) => text.replace('\nbegin\n', '\nbegin\n  -- an earlier body\n');

async function hashes(pool: pg.Pool, name: string): Promise<{ sha256: string; current: boolean }[]> {
  const { rows } = await pool.query<{ sha256: string; current: boolean }>(
    'select sha256, current from leash_function_hashes where name = $1 order by applied_at',
    [name],
  );
  return rows;
}

/** Each function's pg_proc row version: it changes when the function is created or replaced. */
async function versions(pool: pg.Pool): Promise<Map<string, string>> {
  const { rows } = await pool.query<{ name: string; xmin: string }>(
    `select proname as name, xmin::text as xmin from pg_proc where pronamespace = current_schema()::regnamespace`,
  );
  return new Map(rows.map((r) => [r.name, r.xmin]));
}

describe('SQL function files', () => {
  const open: TestDatabase[] = [];
  afterEach(async () => {
    for (const db of open.splice(0)) await db.close();
  });
  async function database(): Promise<TestDatabase> {
    const db = await freshDatabase(4);
    open.push(db);
    return db;
  }

  it('lists every .sql file in src/db/functions once, and each one defines its function with create or replace', async () => {
    const onDisk = (await readdir(FUNCTIONS_DIR))
      .filter((f) => f.endsWith('.sql'))
      .map((f) => f.slice(0, -4));
    expect([...FUNCTION_FILES].sort()).toEqual(onDisk.sort());
    expect(new Set(FUNCTION_FILES).size).toBe(FUNCTION_FILES.length);
    for (const file of await loadFunctionFiles())
      expect(file.text, file.name).toMatch(
        new RegExp(`^create or replace (function|procedure) ${file.name}\\(`, 'm'),
      );
  });

  it('brings back no function a migration dropped, and leaves no function a migration created without a file', async () => {
    const last = new Map<string, 'create' | 'drop'>();
    const names = (await readdir(MIGRATIONS_DIR)).filter((f) => f.endsWith('.ts')).sort();
    for (const migration of names) {
      const text = await readFile(new URL(migration, MIGRATIONS_DIR), 'utf8');
      const pattern = /\b(create(?: or replace)?|drop) (?:function|procedure|routine) (?:if exists )?(\w+)/gi;
      for (const [, verb, fn] of text.matchAll(pattern))
        last.set(fn!, verb!.toLowerCase() === 'drop' ? 'drop' : 'create');
    }
    const dropped = [...last].filter(([, v]) => v === 'drop').map(([fn]) => fn);
    expect(dropped).toContain('leash_audit_notify');
    for (const fn of dropped) expect(FUNCTION_FILES, fn).not.toContain(fn);
    for (const [fn, verb] of last) if (verb === 'create') expect(FUNCTION_FILES, fn).toContain(fn);
  });

  it('applies a file whose hash changed on the next migrate, and leaves the unchanged ones alone', async () => {
    const db = await database();
    // The database as the previous release left it: an earlier body of leash_lock_window, recorded as applied.
    await db.pool.query(`delete from leash_function_hashes where name = 'leash_lock_window'`);
    expect(
      await applyFunctionFiles(db.db, await filesWith('leash_lock_window', earlier), LATEST_MIGRATION),
    ).toEqual(['leash_lock_window']);
    const before = await versions(db.pool);

    expect(await migrateToLatest(db.db)).toEqual(['functions/leash_lock_window.sql']);

    const after = await versions(db.pool);
    for (const [fn, xmin] of before)
      if (fn === 'leash_lock_window') expect(after.get(fn)).not.toBe(xmin);
      else expect(after.get(fn), fn).toBe(xmin);
    const [file] = (await loadFunctionFiles()).filter((f) => f.name === 'leash_lock_window');
    const expected = await fileFunctions(db.pool, [file!]);
    const inDatabase = await databaseFunctions(db.pool);
    for (const [fn, def] of expected) expect(inDatabase.get(fn)).toBe(def);
    expect(await hashes(db.pool, 'leash_lock_window')).toEqual([
      { sha256: functionFile('leash_lock_window', earlier(file!.text)).sha256, current: false },
      { sha256: file!.sha256, current: true },
    ]);
    expect(await migrateToLatest(db.db)).toEqual([]);
  });

  it('does not put back a body a leash at the same migration replaced, but does for a newer leash', async () => {
    const db = await database();
    const older = await filesWith('leash_lock_window', earlier);
    // The previous release's body, then this one's: as an upgrade leaves the table.
    await db.pool.query(`delete from leash_function_hashes where name = 'leash_lock_window'`);
    await applyFunctionFiles(db.db, older, LATEST_MIGRATION);
    expect(await migrateToLatest(db.db)).toEqual(['functions/leash_lock_window.sql']);

    // A replica of the previous release restarting during the upgrade: the newer body stays.
    expect(await applyFunctionFiles(db.db, older, LATEST_MIGRATION)).toEqual([]);
    expect((await databaseFunctions(db.pool)).get(LOCK_WINDOW)).not.toContain('an earlier body');
    expect(await migrateToLatest(db.db)).toEqual([]);

    // A later release (a newer migration) that brings the earlier body back: applied.
    expect(await applyFunctionFiles(db.db, older, '2099-01-01-0001-later')).toEqual(['leash_lock_window']);
    expect((await databaseFunctions(db.pool)).get(LOCK_WINDOW)).toContain('an earlier body');
  });

  it('applies none of the changed files when one fails, naming it (a changed result type needs a new name)', async () => {
    const db = await database();
    const files = (
      await filesWith('leash_window_order', (t) => t.replace('\n  select', '\n  -- changed\n  select'))
    ).map((f) =>
      f.name === 'leash_lock_window'
        ? functionFile(f.name, f.text.replace('returns void', 'returns integer'))
        : f,
    );
    const table = () =>
      db.pool
        .query<Record<string, unknown>>('select * from leash_function_hashes order by name, sha256')
        .then((r) => r.rows);
    const [tableBefore, functionsBefore] = [await table(), await databaseFunctions(db.pool)];

    await expect(applyFunctionFiles(db.db, files, LATEST_MIGRATION)).rejects.toThrow(
      /^leash_lock_window\.sql: cannot change return type of existing function/,
    );

    expect(await table()).toEqual(tableBefore);
    expect(await databaseFunctions(db.pool)).toEqual(functionsBefore);
  });

  it("applies under the migrator's own lock: it waits while another process migrates", async () => {
    const db = await database();
    const files = await filesWith('leash_lock_window', earlier);
    const adapter = new PostgresAdapter();
    const lock = { lockTable: 'leash_migrations_lock', lockRowId: 'migration_lock' };
    const waiting = () =>
      db.pool
        .query<{ n: number }>(
          `select count(*)::int as n from pg_locks
            where locktype = 'advisory' and not granted
              and database = (select oid from pg_database where datname = current_database())`,
        )
        .then((r) => r.rows[0]?.n ?? 0);
    await db.db.connection().execute(async (session) => {
      // What Kysely's Migrator holds while it migrates.
      await adapter.acquireMigrationLock(session, lock);
      let applying: Promise<string[]> | undefined;
      try {
        applying = applyFunctionFiles(db.db, files, LATEST_MIGRATION);
        await expect.poll(waiting, { timeout: 20_000 }).toBe(1);
      } finally {
        await adapter.releaseMigrationLock(session, lock);
      }
      expect(await applying).toEqual(['leash_lock_window']);
    });
  });

  it('applies a changed file once when two pools migrate at the same time', async () => {
    const db = await database();
    await db.pool.query(`delete from leash_function_hashes where name = 'leash_lock_window'`);
    const other = await db.openPool(2);
    try {
      const results = await Promise.all([migrateToLatest(db.db), migrateToLatest(other.db)]);
      expect(results.flat()).toEqual(['functions/leash_lock_window.sql']);
    } finally {
      await other.close();
    }
  });
});
