import { Migrator, sql, type Kysely, type Migration, type MigrationResultSet } from 'kysely';
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

/** Every migration, in order. Names are frozen: they are recorded in the database. */
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
};

/** Thrown when a migration fails; the database is left at the last good migration. */
export class MigrationError extends Error {
  override name = 'MigrationError';
}

/** Applies pending migrations; a no-op when up to date. Safe to run from several processes at once. */
export async function migrateToLatest<DB>(db: Kysely<DB>): Promise<string[]> {
  // Fast path for every command that opens the database: one read when the schema is already current.
  const latest = Object.keys(MIGRATIONS).at(-1);
  const current = await sql<{ name: string }>`select name from leash_migrations order by name desc limit 1`
    .execute(db)
    .then((r) => r.rows[0]?.name)
    .catch(() => undefined);
  if (current !== undefined && current === latest) return [];
  // A newer leash migrated this database (a replica left on the previous version during an upgrade, say): its
  // schema may not be what this version expects, so refuse rather than run on it.
  if (current !== undefined && latest !== undefined && current > latest)
    throw new MigrationError(
      `the database was migrated by a newer leash (it is at ${current}; this version knows up to ${latest}): ` +
        'run that version or a newer one',
    );
  const migrator = new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(MIGRATIONS) },
    migrationTableName: 'leash_migrations',
    migrationLockTableName: 'leash_migrations_lock',
  });
  const result: MigrationResultSet = await migrator.migrateToLatest();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    const message = result.error instanceof Error ? result.error.message : JSON.stringify(result.error);
    throw new MigrationError(`migration ${failed} failed: ${message}`);
  }
  return (result.results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
