// Compares a database's functions with the files in src/db/functions/: each file is applied in a scratch schema of a
// transaction that is rolled back, and pg_get_functiondef of both must be equal, character for character.
import type pg from 'pg';
import type { FunctionFile } from '../../src/db/function-files.js';

/** `name(identity arguments)` → pg_get_functiondef without the schema, for every function of one schema. */
async function definitions(client: pg.PoolClient, schema: string): Promise<Map<string, string>> {
  const { rows } = await client.query<{ name: string; args: string; def: string }>(
    `select p.proname as name, pg_get_function_identity_arguments(p.oid) as args, pg_get_functiondef(p.oid) as def
       from pg_proc p
      where p.pronamespace = $1::regnamespace
        and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')`,
    [schema],
  );
  const unqualified = (def: string) =>
    def.replace(/^(CREATE OR REPLACE (?:FUNCTION|PROCEDURE) )(?:"[^"]+"|[^.(\s]+)\./, '$1');
  return new Map(rows.map((r) => [`${r.name}(${r.args})`, unqualified(r.def)]));
}

/** Every function of leash's schema (the connection's current schema) as the database has it. */
export async function databaseFunctions(pool: pg.Pool): Promise<Map<string, string>> {
  const client = await pool.connect();
  try {
    const { rows } = await client.query<{ schema: string }>('select current_schema() as schema');
    return await definitions(client, rows[0]!.schema);
  } finally {
    client.release();
  }
}

/**
 * What each file defines, as the database stores it: applied one by one in a scratch schema (ahead of leash's on the
 * search path, so tables and types resolve as they do for the real ones), then rolled back. A file must define exactly
 * one function, named as the file is.
 */
export async function fileFunctions(
  pool: pg.Pool,
  files: readonly FunctionFile[],
): Promise<Map<string, string>> {
  const client = await pool.connect();
  const all = new Map<string, string>();
  try {
    for (const file of files) {
      await client.query('begin');
      try {
        await client.query('create schema leash_scratch');
        await client.query(`select set_config('search_path', 'leash_scratch, ' || current_schema(), true)`);
        await client.query(file.text);
        const defined = await definitions(client, 'leash_scratch');
        const keys = [...defined.keys()];
        if (keys.length !== 1 || !keys[0]!.startsWith(`${file.name}(`))
          throw new Error(`${file.name}.sql defines ${keys.join(', ') || 'nothing'}, not one ${file.name}`);
        all.set(keys[0]!, defined.get(keys[0]!)!);
      } finally {
        await client.query('rollback');
      }
    }
  } finally {
    client.release();
  }
  return all;
}
