// Frozen: no NOTIFY on the commit path. A per-row pg_notify trigger cut 16 concurrent durable inserts from
// 8–12 k/s to ~3.9 k/s (NOTIFY takes a database-wide lock at commit); `leash audit tail -f` polls instead.
// The audit_log indexes stay as they are: each serves one operator query (BENCHMARKS.md §5 lists them).
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    drop trigger if exists audit_notify on audit_log;
    drop function if exists leash_audit_notify();
  `.execute(db);
}
