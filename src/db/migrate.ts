import { Migrator, sql, type Kysely, type Migration, type MigrationResultSet } from 'kysely';
import {
  applyFunctionFiles,
  functionsToApply,
  loadFunctionFiles,
  type AppliedFunction,
  type FunctionFile,
} from './function-files.js';
import * as initial from './migrations/2026-11-22-0001-initial.js';
import * as admission from './migrations/2026-11-22-0002-admission.js';
import * as auditUsdIndex from './migrations/2026-11-22-0003-audit-usd-index.js';
import * as hotSettle from './migrations/2026-11-22-0004-hot-settle.js';
import * as objectUnique from './migrations/2026-11-23-0005-object-unique.js';
import * as leanAudit from './migrations/2026-11-23-0006-lean-audit.js';
import * as oneTrip from './migrations/2026-11-23-0007-one-trip.js';
import * as approvals from './migrations/2026-11-23-0008-approvals.js';
import * as batchAdmission from './migrations/2026-11-23-0009-batch-admission.js';
import * as indexedBatches from './migrations/2026-11-23-0010-indexed-batches.js';
import * as leanerBatches from './migrations/2026-11-23-0011-leaner-batches.js';
import * as admissionGuards from './migrations/2026-11-23-0012-admission-guards.js';
import * as replays from './migrations/2026-12-06-0013-replays.js';
import * as approvalCancel from './migrations/2026-12-06-0014-approval-cancel.js';
import * as credentialVersion from './migrations/2026-12-06-0015-credential-version.js';
import * as outcomePending from './migrations/2026-12-06-0016-outcome-pending.js';
import * as functionFiles from './migrations/2026-12-06-0017-function-files.js';
import * as operators from './migrations/2026-12-06-0018-operators.js';
import * as tripwires from './migrations/2026-12-06-0019-tripwires.js';
import * as shadowPolicies from './migrations/2026-12-07-0020-shadow-policies.js';
import * as oauthBindings from './migrations/2026-12-07-0021-oauth-bindings.js';
import * as auditPartitions from './migrations/2026-12-07-0022-audit-partitions.js';

/**
 * Every migration, in order. Names are frozen: they are recorded in the database. Migrations change tables, indexes
 * and data; functions and procedures live in functions/*.sql, applied after them (function-files.ts).
 */
const MIGRATIONS: Record<string, Migration> = {
  '2026-11-22-0001-initial': initial,
  '2026-11-22-0002-admission': admission,
  '2026-11-22-0003-audit-usd-index': auditUsdIndex,
  '2026-11-22-0004-hot-settle': hotSettle,
  '2026-11-23-0005-object-unique': objectUnique,
  '2026-11-23-0006-lean-audit': leanAudit,
  '2026-11-23-0007-one-trip': oneTrip,
  '2026-11-23-0008-approvals': approvals,
  '2026-11-23-0009-batch-admission': batchAdmission,
  '2026-11-23-0010-indexed-batches': indexedBatches,
  '2026-11-23-0011-leaner-batches': leanerBatches,
  '2026-11-23-0012-admission-guards': admissionGuards,
  '2026-12-06-0013-replays': replays,
  '2026-12-06-0014-approval-cancel': approvalCancel,
  '2026-12-06-0015-credential-version': credentialVersion,
  '2026-12-06-0016-outcome-pending': outcomePending,
  '2026-12-06-0017-function-files': functionFiles,
  '2026-12-06-0018-operators': operators,
  '2026-12-06-0019-tripwires': tripwires,
  '2026-12-07-0020-shadow-policies': shadowPolicies,
  '2026-12-07-0021-oauth-bindings': oauthBindings,
  '2026-12-07-0022-audit-partitions': auditPartitions,
};
/** The newest migration this version knows. */
export const LATEST_MIGRATION = Object.keys(MIGRATIONS).at(-1) ?? '';

/** Thrown when a migration fails; the database is left at the last good migration. */
export class MigrationError extends Error {
  override name = 'MigrationError';
}

/** Where the database is: its latest migration and, once it has the table, the function bodies it records. */
async function readState<DB>(db: Kysely<DB>): Promise<{ migration?: string; functions?: AppliedFunction[] }> {
  const both = await sql<{ migration: string | null; functions: AppliedFunction[] }>`
    select (select name from leash_migrations order by name desc limit 1) as migration,
           (select coalesce(json_agg(json_build_object('name', name, 'sha256', sha256, 'applied_by', applied_by,
                                                       'current', current)), '[]')
              from leash_function_hashes) as functions`
    .execute(db)
    .then((r) => r.rows[0])
    .catch(() => undefined);
  if (both)
    return { ...(both.migration === null ? {} : { migration: both.migration }), functions: both.functions };
  // Before leash_function_hashes (or before any migration).
  const migration = await sql<{ name: string }>`select name from leash_migrations order by name desc limit 1`
    .execute(db)
    .then((r) => r.rows[0]?.name)
    .catch(() => undefined);
  return migration === undefined ? {} : { migration };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : JSON.stringify(error);
}

function migrator<DB>(db: Kysely<DB>): Migrator {
  return new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(MIGRATIONS) },
    migrationTableName: 'leash_migrations',
    migrationLockTableName: 'leash_migrations_lock',
  });
}

function applied(result: MigrationResultSet): string[] {
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new MigrationError(`migration ${failed} failed: ${messageOf(result.error)}`);
  }
  return (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * Applies pending migrations, then every function file whose hash changed; a no-op when up to date. Safe to run from
 * several processes at once. Returns the migrations applied, then the function files (`functions/<name>.sql`).
 */
export async function migrateToLatest<DB>(db: Kysely<DB>): Promise<string[]> {
  // Fast path for every command that opens the database: one query when the schema is already current.
  const [files, state] = await Promise.all([
    loadFunctionFiles().catch((error: unknown) => {
      throw new MigrationError(`the function files are missing: ${messageOf(error)}`, { cause: error });
    }),
    readState(db),
  ]);
  // A newer leash migrated this database (a replica left on the previous version during an upgrade, say): its
  // schema may not be what this version expects, so refuse rather than run on it.
  if (state.migration !== undefined && state.migration > LATEST_MIGRATION)
    throw new MigrationError(
      `the database was migrated by a newer leash (it is at ${state.migration}; ` +
        `this version knows up to ${LATEST_MIGRATION}): run that version or a newer one`,
    );
  const current = state.migration === LATEST_MIGRATION;
  if (current && state.functions && functionsToApply(files, state.functions, LATEST_MIGRATION).length === 0)
    return [];
  const migrations = current ? [] : applied(await migrator(db).migrateToLatest());
  return [...migrations, ...(await applyFunctions(db, files)).map((name) => `functions/${name}.sql`)];
}

async function applyFunctions<DB>(db: Kysely<DB>, files: FunctionFile[]): Promise<string[]> {
  try {
    return await applyFunctionFiles(db, files, LATEST_MIGRATION);
  } catch (error) {
    throw new MigrationError(`function file ${messageOf(error)}`, { cause: error });
  }
}

/**
 * Applies the migrations up to and including `name`, and no function file: the schema an earlier release left (an
 * upgrade's starting point, in tests). Returns the migrations applied.
 */
export async function migrateTo<DB>(db: Kysely<DB>, name: string): Promise<string[]> {
  if (!(name in MIGRATIONS)) throw new MigrationError(`no migration named ${name}`);
  return applied(await migrator(db).migrateTo(name));
}
