// Covers leash behind a real PgBouncer in transaction pooling mode: migrations, caps exact across two pools sharing
// four server sessions, revoke, approvals admitted once, and no session state left on the shared server sessions.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createLogger } from '../src/config/logger.js';
import { listenForCredentialChanges } from '../src/credentials/credential-changes.js';
import { openDatabase, type DbHandle } from '../src/db/database.js';
import { revokeKeys } from '../src/keys/vault-keys.js';
import { runTool, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, pipelineFor, settledRun, testConfig } from './support/governance.js';
import { pgbouncerMissing, startPgBouncer, type PgBouncer } from '../bench/pgbouncer.js';
import { cli } from './support/run-cli.js';
import { startFakeVendor, testCatalog, type FakeVendor } from './fakes/test-tool.js';

const missing = pgbouncerMissing();
if (missing) console.warn(`PgBouncer tests skipped: ${missing}`);

/** Server sessions PgBouncer keeps for the test database: far fewer than the clients leash opens. */
const SERVER_SESSIONS = 4;

const charge = (cents: number) => ({ amount_cents: cents, customer: 'cus_A' });

describe.skipIf(missing)('leash behind PgBouncer in transaction pooling mode', () => {
  let tdb: TestDatabase;
  let bouncer: PgBouncer;
  let fake: FakeVendor;
  /** Two replicas' pools, both through PgBouncer. */
  let a: DbHandle;
  let b: DbHandle;
  let depsA: PipelineDeps;
  let depsB: PipelineDeps;

  beforeAll(async () => {
    tdb = await freshDatabase(4);
    bouncer = await startPgBouncer(tdb.url, { poolSize: SERVER_SESSIONS });
    console.log(`PgBouncer ${bouncer.version}, pool_mode = transaction, ${SERVER_SESSIONS} server sessions`);
    fake = await startFakeVendor();
    a = await openDatabase(testConfig(), { url: bouncer.url, poolMax: 16 });
    b = await openDatabase(testConfig(), { url: bouncer.url, poolMax: 16 });
    const catalog = testCatalog(fake);
    depsA = pipelineFor(a.db, catalog, undefined, undefined, 30_000);
    depsB = pipelineFor(b.db, catalog, undefined, undefined, 30_000);
    await applyTestPolicy(a.db, catalog, {
      name: 'capped',
      limits: { daily_usd: 10 },
      tools: { charge_test: null },
    });
    await applyTestPolicy(a.db, catalog, {
      name: 'held',
      limits: { daily_usd: 100 },
      tools: { charge_test: { max_amount_usd: 50, approval: { above_usd: 5, expires: '30m' } } },
    });
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
    await fake?.close();
    await bouncer?.stop();
    await tdb?.close();
  });

  it('applies every migration to an empty database through the pooler', async () => {
    const name = `leash_t_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: inject('adminUrl') });
    await admin.connect();
    try {
      await admin.query(`create database ${name}`);
      const handle = await openDatabase(testConfig(), { url: bouncer.urlFor(name), poolMax: 4 });
      try {
        const count = 'select count(*)::int as n from leash_migrations';
        const through = await handle.pool.query<{ n: number }>(count);
        const direct = await tdb.pool.query<{ n: number }>(count);
        expect(through.rows[0]?.n).toBe(direct.rows[0]?.n);
      } finally {
        await handle.close();
      }
    } finally {
      await admin.query(`drop database if exists ${name} with (force)`);
      await admin.end();
    }
  });

  it('admits exactly 33 of 200 concurrent $0.30 calls against a $10.00 daily cap across two pools', async () => {
    const key = await keyFor(a.db, { policy: 'capped', agent: 'burst' });
    fake.received.length = 0;
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        settledRun(i % 2 ? depsA : depsB, key.key, 'charge_test', charge(30)),
      ),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(33);
    expect(new Set(results.flatMap((r) => (r.ok ? [] : [r.failure.code])))).toEqual(
      new Set(['budget_exceeded']),
    );
    expect(fake.received).toHaveLength(33);
    const win = await tdb.db
      .selectFrom('spend_windows')
      .select(['spent_micros', 'reserved_micros'])
      .where('scope', '=', 'policy:capped')
      .executeTakeFirstOrThrow();
    expect(win).toEqual({ spent_micros: 9_900_000, reserved_micros: 0 });
  });

  it('refuses the very next call of a revoked key on both pools, and calls the vendor for neither', async () => {
    const key = await keyFor(a.db, { policy: 'held', agent: 'revoked' });
    expect((await settledRun(depsA, key.key, 'charge_test', charge(100))).ok).toBe(true);
    expect((await settledRun(depsB, key.key, 'charge_test', charge(101))).ok).toBe(true);
    expect(await revokeKeys(b.db, { id: key.id })).toEqual([key.id]);
    fake.received.length = 0;
    for (const deps of [depsA, depsB]) {
      const r = await settledRun(deps, key.key, 'charge_test', charge(102));
      expect(r).toMatchObject({ ok: false, failure: { code: 'key_revoked' } });
    }
    expect(fake.received).toHaveLength(0);
  });

  it('admits exactly one of 10 concurrent identical retries across two pools after one approval', async () => {
    const key = await keyFor(a.db, { policy: 'held', agent: 'approved' });
    const held = await runTool(depsA, key.key, 'charge_test', charge(1_000));
    expect(held).toMatchObject({ ok: false, failure: { code: 'approval_required' } });
    const id = held.ok ? '' : String(held.failure.details?.approval_id);
    const env = {
      DATABASE_URL: bouncer.url,
      LEASH_HOME: '/nonexistent/leash-pgbouncer',
      LEASH_LOG: 'silent',
    };
    const approved = await cli(['approvals', 'approve', id], env);
    expect(approved.code, approved.stderr).toBe(0);
    fake.received.length = 0;
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        runTool(i % 2 ? depsA : depsB, key.key, 'charge_test', charge(1_000)),
      ),
    );
    await Promise.all([depsA.settler.flush(), depsB.settler.flush()]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok && r.failure.code === 'approval_required')).toHaveLength(9);
    expect(fake.received).toHaveLength(1);
  });

  it('does not LISTEN for credential changes through the pooler, and logs why', async () => {
    const lines: string[] = [];
    const changes = listenForCredentialChanges(
      () => a.connectSession(),
      createLogger({ logLevel: 'info' }, (l) => lines.push(l)),
    );
    try {
      await expect.poll(() => lines.join('\n'), { timeout: 15_000 }).toContain('a pooler is between leash');
      expect(changes.live).toBe(false);
    } finally {
      await changes.close();
    }
  });

  it('leaves no session state on any server session: no SET, LISTEN, advisory lock or prepared statement', async () => {
    // One client per server session, each holding its own inside a transaction, so every session is inspected.
    const clients = Array.from(
      { length: SERVER_SESSIONS },
      () => new pg.Client({ connectionString: bouncer.url }),
    );
    try {
      await Promise.all(clients.map((c) => c.connect()));
      await Promise.all(clients.map((c) => c.query('begin')));
      const seen = await Promise.all(
        clients.map(async (c) => {
          const { rows } = await c.query<{ pid: number; state: string[] }>(
            // What PgBouncer itself sets for each client (the parameters it tracks) is not leash's.
            `select pg_backend_pid() as pid, array(
               select 'set ' || name || ' = ' || setting from pg_settings
                 where source = 'session' and name not in
                   ('application_name', 'client_encoding', 'DateStyle', 'TimeZone', 'standard_conforming_strings',
                    'IntervalStyle')
               union all select 'listen ' || ch from pg_listening_channels() as ch
               union all select 'prepared ' || name from pg_prepared_statements
               union all select 'advisory lock ' || objid from pg_locks
                 where locktype = 'advisory' and pid = pg_backend_pid()) as state`,
          );
          return rows[0]!;
        }),
      );
      expect(new Set(seen.map((s) => s.pid)).size).toBe(SERVER_SESSIONS);
      expect(seen.flatMap((s) => s.state)).toEqual([]);
    } finally {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    }
  });
});
