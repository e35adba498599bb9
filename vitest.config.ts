import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// The database-facing files (migrations, admission, caps across pools, revoke, approvals, settle, reconcile) run a
// second time against the system's PostgreSQL 15 (Debian's postgresql-15) when it is installed; the embedded is 18.
const SYSTEM_PG = 15;
const SYSTEM_PG_FILES = [
  'test/migrations.test.ts',
  'test/pipeline.test.ts',
  'test/engine.test.ts',
  'test/approvals.test.ts',
  'test/approvals-revoke.test.ts',
  'test/function-files.test.ts',
  'test/outcome-pending.test.ts',
  'test/tripwires.test.ts',
  'test/audit-partitions.test.ts',
];
const systemPg = existsSync(`/usr/lib/postgresql/${SYSTEM_PG}/bin/initdb`);
// Said once, should vitest evaluate this file again.
if (!systemPg && !process.env.LEASH_SYSTEM_PG_SKIP_SAID) {
  process.env.LEASH_SYSTEM_PG_SKIP_SAID = '1';
  console.log(
    `postgres-${SYSTEM_PG} tests skipped: /usr/lib/postgresql/${SYSTEM_PG}/bin/initdb not found (install postgresql-${SYSTEM_PG})`,
  );
}

// What every project runs with (each project spells it out: one that extends the root would run the root's global
// set-up again). Files are not isolated: a worker runs its files one after the other in one process, so the server,
// the vendor SDKs and the rest are loaded once per worker instead of once per file (about 1.3 s each), and the console
// files share one browser (test/console/browser.ts). Each file still makes its own database, fake vendors and
// servers (test/support/database.ts, test/console/fixture.ts); state a module keeps must therefore hold across
// databases (compiled policies are keyed by their document, not only by name and version).
const shared = { testTimeout: 120_000, hookTimeout: 180_000, pool: 'forks', isolate: false } as const;

// Files that change what the process keeps for the files after them, each run in a process of its own: moving the
// clock into next month makes every later audit id of the process next month's (UUIDv7 ids never go back in time).
const OWN_PROCESS_FILES = ['test/audit-partitions-live.test.ts'];

export default defineConfig({
  test: {
    maxWorkers: 2,
    // Once per run, for every project: one PostgreSQL and template database, the console tests' browser binary.
    // A project's own set-up (postgres-15's) provides its own values over these.
    globalSetup: ['test/support/global-setup.ts'],
    projects: [
      {
        test: {
          ...shared,
          name: 'leash',
          include: ['src/**/*.test.ts', 'tools/**/*.test.ts', 'test/**/*.test.ts'],
          exclude: [...OWN_PROCESS_FILES, '**/node_modules/**'],
        },
      },
      { test: { ...shared, name: 'own-process', include: OWN_PROCESS_FILES, isolate: true } },
      ...(systemPg
        ? [
            {
              test: {
                ...shared,
                name: `postgres-${SYSTEM_PG}`,
                include: SYSTEM_PG_FILES,
                globalSetup: ['test/support/system-postgres-setup.ts'],
              },
            },
          ]
        : []),
    ],
  },
});
