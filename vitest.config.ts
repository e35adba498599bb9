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
// Said once: vitest evaluates this file again for each project that extends it.
if (!systemPg && !process.env.LEASH_SYSTEM_PG_SKIP_SAID) {
  process.env.LEASH_SYSTEM_PG_SKIP_SAID = '1';
  console.log(
    `postgres-${SYSTEM_PG} tests skipped: /usr/lib/postgresql/${SYSTEM_PG}/bin/initdb not found (install postgresql-${SYSTEM_PG})`,
  );
}

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'leash',
          include: ['src/**/*.test.ts', 'tools/**/*.test.ts', 'test/**/*.test.ts'],
          globalSetup: ['test/support/global-setup.ts'],
        },
      },
      ...(systemPg
        ? [
            {
              extends: true as const,
              test: {
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
