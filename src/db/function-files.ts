// leash's SQL functions and procedures as code: one file each in functions/, holding its current definition, applied
// after the migrations whenever its content hash changed (what Flyway's repeatable migrations do). See
// functions/README.md for the rules that keep this safe during an upgrade.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { sql, type Kysely } from 'kysely';

/**
 * Every function file (`functions/<name>.sql`), in the order they are applied: a function before those whose
 * creation checks it (SQL-language bodies are checked when created; PL/pgSQL resolves names when called). A name is
 * recorded in the database; a file not listed here is never applied.
 */
export const FUNCTION_FILES: readonly string[] = [
  'leash_key_lock_id',
  'leash_trip_lock_id',
  'leash_window_order',
  'leash_admission_session',
  'leash_lock_batch',
  'leash_lock_window',
  'leash_claim_object',
  'leash_active_pause',
  'leash_lock_tripwires',
  'leash_tripwires',
  'leash_give_back',
  'leash_admit_call',
  'leash_admission',
  'leash_admit_batch_each',
  'leash_admit_batch',
  'leash_record_denial',
  'leash_settle_calls',
  'leash_settle_call',
  'leash_correct_replays',
  'leash_vendor_credentials_changed',
  // Legacy: called only by replicas still on an earlier version during an upgrade.
  'leash_admit',
  'leash_settle',
  'leash_settle_batch',
];

/** Where the files are: beside this module in src/ and dist/src/, beside the bundle's chunks in dist/bundle/. */
export const FUNCTIONS_DIR = new URL('./functions/', import.meta.url);

export interface FunctionFile {
  /** The file's name without `.sql`: the function it defines. */
  name: string;
  text: string;
  /** Hex SHA-256 of the file's bytes. */
  sha256: string;
}

/** A body the database has had for a function: `current` is the one in place. */
export interface AppliedFunction {
  name: string;
  sha256: string;
  /** The latest migration of the leash that applied it. */
  applied_by: string;
  current: boolean;
}

/** Makes a function file from its name and text. */
export function functionFile(name: string, text: string): FunctionFile {
  return { name, text, sha256: createHash('sha256').update(text, 'utf8').digest('hex') };
}

let loading: Promise<FunctionFile[]> | undefined;

/** Reads every listed file (once per process). */
export function loadFunctionFiles(): Promise<FunctionFile[]> {
  loading ??= Promise.all(
    FUNCTION_FILES.map(async (name) => {
      const path = fileURLToPath(new URL(`${name}.sql`, FUNCTIONS_DIR));
      const text = await readFile(path, 'utf8').catch((error: unknown) => {
        throw new Error(`cannot read ${path} (the build copies src/db/functions/*.sql there)`, {
          cause: error,
        });
      });
      return functionFile(name, text);
    }),
  ).catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}

/**
 * The files to apply: those whose hash differs from the body in place. Except a body this database had before, put
 * there by a leash at this migration or a newer one, and replaced since: this leash is the older one (a replica of the
 * previous version restarting during an upgrade), so the newer body stays.
 */
export function functionsToApply(
  files: readonly FunctionFile[],
  applied: readonly AppliedFunction[],
  level: string,
): FunctionFile[] {
  return files.filter((file) => {
    const rows = applied.filter((a) => a.name === file.name);
    if (rows.some((a) => a.current && a.sha256 === file.sha256)) return false;
    const before = rows.find((a) => a.sha256 === file.sha256);
    return !(before && before.applied_by >= level);
  });
}

/** Reads what leash_function_hashes records. */
export async function appliedFunctions<DB>(db: Kysely<DB>): Promise<AppliedFunction[]> {
  const { rows } = await sql<AppliedFunction>`
    select name, sha256, applied_by, current from leash_function_hashes`.execute(db);
  return rows;
}

/**
 * Applies the files whose hash changed (create or replace) and records their hashes, in one transaction under the
 * migrator's lock, so concurrent starts apply each body once and a replica calling a function meanwhile sees every
 * old body or every new one. `level` is this leash's latest migration. Returns the names applied, in order.
 */
export async function applyFunctionFiles<DB>(
  db: Kysely<DB>,
  files: readonly FunctionFile[],
  level: string,
): Promise<string[]> {
  return db.transaction().execute(async (trx) => {
    // Kysely's migration lock (PostgresAdapter's LOCK_ID, taken for the session while it migrates), held here to the
    // end of this transaction: safe behind a transaction pooler, and released by the commit or the rollback.
    await sql`select set_config('lock_timeout', '1h', true)`.execute(trx);
    await sql`select pg_advisory_xact_lock(3853314791062309107)`.execute(trx);
    const todo = functionsToApply(files, await appliedFunctions(trx), level);
    for (const file of todo) {
      try {
        await sql.raw(file.text).execute(trx);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        throw new Error(`${file.name}.sql: ${message}`, { cause: error });
      }
      await sql`update leash_function_hashes set current = false where name = ${file.name} and current`.execute(
        trx,
      );
      await sql`
        insert into leash_function_hashes (name, sha256, applied_by, current)
          values (${file.name}, ${file.sha256}, ${level}, true)
          on conflict (name, sha256) do update
            set applied_by = excluded.applied_by, applied_at = excluded.applied_at, current = true`.execute(
        trx,
      );
    }
    // A function whose file went (a migration dropped it): forget its bodies, so one brought back is applied.
    await sql`delete from leash_function_hashes where name <> all(${files.map((f) => f.name)}::text[])`.execute(
      trx,
    );
    return todo.map((f) => f.name);
  });
}
