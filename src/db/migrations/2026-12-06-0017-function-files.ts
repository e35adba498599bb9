// Frozen: SQL functions and procedures become code. Each lives in one file (src/db/functions/<name>.sql, its current
// definition), which the migrator applies after the migrations whenever the file's SHA-256 changes, as Flyway's
// repeatable migrations; migrations from here on change tables, indexes and data only, and call none of those
// functions. This table records every body a function has had here: `current` marks the one in place, `applied_by`
// the latest migration of the leash that applied it (a replica of an older leash restarting during an upgrade does not
// put back a body a newer one replaced).
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table leash_function_hashes (
      name        text not null,
      sha256      text not null,
      applied_by  text not null,
      applied_at  timestamptz not null default clock_timestamp(),
      current     boolean not null,
      primary key (name, sha256)
    );
    create unique index leash_function_hashes_current on leash_function_hashes (name) where current;
  `.execute(db);
}
