// Covers the staged engine's guarantees: one database round trip before the vendor, an atomic loop guard,
// settlement off the answer path, and a cached key that never outlives a revoke, a rotate or a policy change.
import { Kysely, PostgresDialect, sql, type LogEvent } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Database } from '../src/db/schema.js';
import { uuidv7 } from '../src/audit/uuid.js';
import { admit } from '../src/audit/write.js';
import { spendReport } from '../src/ledger/spend.js';
import { authenticate } from '../src/keys/authenticate.js';
import { revokeKeys, rotateKey } from '../src/keys/vault-keys.js';
import { runTool, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { freshDatabase, sessionsWith, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, pipelineFor, readAuditRow } from './support/governance.js';
import { chargeTest, startFakeVendor, testCatalog, type FakeVendor } from './fakes/test-tool.js';

let tdb: TestDatabase;
let fake: FakeVendor;
let deps: PipelineDeps;
let counted: Kysely<Database>;
/** Every statement the pipeline ran, with how many requests the fake vendor had received by then. */
const statements: { sql: string; vendorRequests: number }[] = [];

beforeAll(async () => {
  tdb = await freshDatabase(30);
  fake = await startFakeVendor();
  counted = new Kysely<Database>({
    dialect: new PostgresDialect({ pool: tdb.pool }),
    log: (e: LogEvent) => void statements.push({ sql: e.query.sql, vendorRequests: fake.received.length }),
  });
  deps = pipelineFor(counted, testCatalog(fake));
  await applyTestPolicy(tdb.db, deps.catalog, {
    name: 'engine',
    limits: { daily_usd: 1000, per_key_daily_usd: 1000, hourly_requests: 1000 },
    tools: { charge_test: { max_amount_usd: 50 } },
    loop_guard: { identical_calls: 3, window: '10m' },
  });
});

afterAll(async () => {
  await deps.settler.flush();
  await fake.close();
  await tdb.close();
});

beforeEach(async () => {
  await deps.settler.flush();
  fake.received.length = 0;
  statements.length = 0;
});

const charge = (cents: number) => ({ amount_cents: cents, customer: 'cus_A' });

const row = (id: string) => readAuditRow(tdb.db, id);

describe('the staged engine', () => {
  it('makes exactly one database round trip before the vendor call once the key is known', async () => {
    const key = await keyFor(tdb.db, { policy: 'engine' });
    expect((await runTool(deps, key.key, 'charge_test', charge(101))).ok).toBe(true);
    await deps.settler.flush();
    statements.length = 0;
    fake.received.length = 0;
    const r = await runTool(deps, key.key, 'charge_test', charge(102));
    expect(r.ok).toBe(true);
    expect(fake.received).toHaveLength(1);
    const before = statements.filter((s) => s.vendorRequests === 0);
    expect(before).toHaveLength(1);
    expect(before[0]?.sql).toContain('leash_admission');
  });

  it('answers before the settle commits, and the settle lands within the batch delay', async () => {
    const key = await keyFor(tdb.db, { policy: 'engine' });
    const r = await runTool(deps, key.key, 'charge_test', charge(200));
    if (!r.ok) throw new Error(r.failure.message);
    // No settle statement ran on the answer path.
    expect(statements.some((s) => s.sql.includes('leash_settle'))).toBe(false);
    await deps.settler.flush();
    expect(await row(r.audit_id)).toMatchObject({
      outcome: 'succeeded',
      cost_micros: 2_000_000,
      reserved_micros: 0,
    });
  });

  it('admits exactly the loop-guard limit of 20 concurrent identical calls', async () => {
    const key = await keyFor(tdb.db, { policy: 'engine' });
    const results = await Promise.all(
      Array.from({ length: 20 }, () => runTool(deps, key.key, 'charge_test', charge(300))),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(3);
    const refused = results.filter((r) => !r.ok);
    expect(refused.every((r) => !r.ok && r.failure.code === 'loop_detected')).toBe(true);
    expect(fake.received).toHaveLength(3);
  });

  it('refuses the next call of a cached key after a revoke, and after a rotate with the old secret', async () => {
    const a = await keyFor(tdb.db, { policy: 'engine' });
    const b = await keyFor(tdb.db, { policy: 'engine' });
    expect((await runTool(deps, a.key, 'charge_test', charge(401))).ok).toBe(true);
    expect((await runTool(deps, b.key, 'charge_test', charge(402))).ok).toBe(true);
    fake.received.length = 0;
    await revokeKeys(tdb.db, { id: a.id });
    const revoked = await runTool(deps, a.key, 'charge_test', charge(403));
    expect(revoked).toMatchObject({ ok: false, failure: { code: 'key_revoked', retryable: false } });
    // Also when the policy would refuse the call anyway: the key's state wins, checked in the same statement.
    const overLimit = await runTool(deps, a.key, 'charge_test', charge(9_999));
    expect(overLimit).toMatchObject({ ok: false, failure: { code: 'key_revoked' } });
    await rotateKey(tdb.db, b.id);
    const old = await runTool(deps, b.key, 'charge_test', charge(404));
    expect(old).toMatchObject({ ok: false, failure: { code: 'key_invalid' } });
    expect(fake.received).toHaveLength(0);
  });

  it('follows a policy change for a cached key on its very next call', async () => {
    await applyTestPolicy(tdb.db, deps.catalog, {
      name: 'moving',
      tools: { charge_test: { max_amount_usd: 50 } },
    });
    const key = await keyFor(tdb.db, { policy: 'moving' });
    expect((await runTool(deps, key.key, 'charge_test', charge(1_000))).ok).toBe(true);
    await applyTestPolicy(tdb.db, deps.catalog, {
      name: 'moving',
      tools: { charge_test: { max_amount_usd: 5 } },
    });
    const r = await runTool(deps, key.key, 'charge_test', charge(1_001));
    expect(r).toMatchObject({ ok: false, failure: { code: 'amount_over_limit' } });
    if (!r.ok) expect((await row(r.failure.audit_id ?? '')).policy_version).toBe(2);
    await applyTestPolicy(tdb.db, deps.catalog, {
      name: 'moving',
      tools: { charge_test: { max_amount_usd: 50 } },
    });
    // And the other way: a call the cached (stricter) version would refuse is decided by the new one.
    expect((await runTool(deps, key.key, 'charge_test', charge(1_002))).ok).toBe(true);
  });

  it('keeps every settle of a batch when one names an object another key owns, and makes one its own key owns a $0 replay', async () => {
    const key = await keyFor(tdb.db, { policy: 'engine' });
    const other = await keyFor(tdb.db, { policy: 'engine' });
    const ids: string[] = [];
    for (const [k, cents] of [
      [key, 501],
      [key, 502],
      [other, 503],
      [key, 504],
    ] as const) {
      const r = await runTool(deps, k.key, 'charge_test', charge(cents));
      if (!r.ok) throw new Error(r.failure.message);
      ids.push(r.audit_id);
    }
    await deps.settler.flush();
    const owner = await row(ids[0]!);
    const ownerObject = owner.vendor_object_id ?? '';
    // Three rows settled again in one batch (outcome unknown → succeeded): one of the owner's key and one of another
    // key claim the object row 0 owns; the last names a new object.
    const again = ids.slice(1);
    await tdb.db.updateTable('audit_log').set({ outcome: 'unknown' }).where('id', 'in', again).execute();
    const objects = [ownerObject, ownerObject, 'eff_batch_new'];
    again.forEach((id, i) =>
      deps.settler.enqueue({
        id,
        outcome: 'succeeded',
        cost: 1,
        cost_status: 'settled',
        patch: { vendor_object_id: objects[i]! },
      }),
    );
    await deps.settler.flush();
    const rows = await Promise.all(ids.map(row));
    expect(rows.map((r) => r.outcome)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    // Same key, same object: a replay of row 0, counted once.
    expect(rows[1]?.metadata).toMatchObject({ replay_of: ids[0] });
    expect(Number(rows[1]?.cost_micros)).toBe(0);
    // Another key's row claiming it: kept, marked, and not given the object.
    expect(rows[2]?.vendor_object_id).not.toBe(ownerObject);
    expect(rows[2]?.metadata).toMatchObject({ vendor_object_id_conflict: ownerObject });
    expect(rows[3]?.vendor_object_id).toBe('eff_batch_new');
  });

  it('stores only the length and hash of a sensitive field when the call is invalid', async () => {
    const catalog = testCatalog(fake);
    const tools = new Map(catalog.tools);
    tools.set('charge_test', { ...chargeTest, sensitive: ['customer'] });
    const sensitiveDeps = pipelineFor(tdb.db, { ...catalog, tools });
    const key = await keyFor(tdb.db, { policy: 'engine' });
    const r = await runTool(sensitiveDeps, key.key, 'charge_test', {
      amount_cents: -1,
      customer: 'secret code 424242',
    });
    expect(r).toMatchObject({ ok: false, failure: { code: 'invalid_input', retryable: true } });
    if (r.ok) return;
    const stored = JSON.stringify((await row(r.failure.audit_id ?? '')).request);
    expect(stored).not.toContain('424242');
    expect(stored).toContain('"length":18');
    expect(fake.received).toHaveLength(0);
  });

  it("counts a call in the database's budget window, and reports it there, whatever this machine's clock says", async () => {
    // This machine's clock 36 hours behind the database's: its own day would be the day before yesterday.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 36 * 3_600_000, shouldAdvanceTime: true });
    try {
      const skewed = pipelineFor(tdb.db, testCatalog(fake));
      expect(await skewed.clock.sync()).toBeGreaterThan(35 * 3_600_000);
      const key = await keyFor(tdb.db, { policy: 'engine' });
      const r = await runTool(skewed, key.key, 'charge_test', charge(500));
      expect(r.ok).toBe(true);
      await skewed.settler.flush();
      const { rows } = await sql<{ today: Date }>`select date_trunc('day', now(), 'UTC') as today`.execute(
        tdb.db,
      );
      const windows = await tdb.db
        .selectFrom('spend_windows')
        .select(['kind', 'window_start', 'spent_micros'])
        .where('scope', '=', `key:${key.id}`)
        .execute();
      expect(windows.map((w) => [w.kind, w.window_start.getTime(), Number(w.spent_micros)])).toEqual([
        ['usd_day', rows[0]!.today.getTime(), 5_000_000],
      ]);
      // The operator's report means the same day, and finds the call's spend against today's cap.
      const report = await spendReport(tdb.db, { by: 'key' });
      expect(report.today.getTime()).toBe(rows[0]!.today.getTime());
      const mine = report.rows.find((r) => r.group === key.id);
      expect([mine?.held_micros, mine?.cap_micros, mine?.remaining_micros]).toEqual([
        5_000_000, 1_000_000_000, 995_000_000,
      ]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('commits a revoke, a rotate and a policy durably, even where commits are asynchronous by default', async () => {
    // Once a revoke returns the key must stay revoked, crash or not (and likewise a rotate, and a stricter policy).
    // The transaction that wrote the row (its xmin) must have its commit record in the flushed WAL at once.
    await sql`create extension if not exists pg_walinspect`.execute(tdb.db);
    const asyncDb = sessionsWith(tdb.url, { synchronous_commit: 'off' });
    const commitFlushed = async (table: 'vault_keys' | 'policies', where: string, from: string) => {
      const column = sql.ref(table === 'vault_keys' ? 'id' : 'name');
      const { rows } = await sql<{ n: number }>`
        select count(*)::integer as n
          from pg_get_wal_records_info(${from}::pg_lsn, pg_current_wal_flush_lsn()) w
          where w.record_type = 'COMMIT'
            and w.xid = (select xmin from ${sql.table(table)} where ${column} = ${where})`.execute(asyncDb);
      return rows[0]?.n === 1;
    };
    const lsnNow = async () =>
      (await sql<{ lsn: string }>`select pg_current_wal_insert_lsn()::text as lsn`.execute(asyncDb)).rows[0]!
        .lsn;
    try {
      const rotated = await keyFor(tdb.db, { policy: 'engine' });
      let from = await lsnNow();
      await rotateKey(asyncDb, rotated.id);
      expect(await commitFlushed('vault_keys', rotated.id, from)).toBe(true);
      const revoked = await keyFor(tdb.db, { policy: 'engine' });
      from = await lsnNow();
      expect(await revokeKeys(asyncDb, { id: revoked.id })).toEqual([revoked.id]);
      expect(await commitFlushed('vault_keys', revoked.id, from)).toBe(true);
      from = await lsnNow();
      await applyTestPolicy(asyncDb, deps.catalog, {
        name: 'durable-policy',
        limits: { daily_usd: 1, hourly_requests: 10 },
        tools: { charge_test: { max_amount_usd: 1 } },
      });
      expect(await commitFlushed('policies', 'durable-policy', from)).toBe(true);
      const { rows } = await sql<{ setting: string }>`
        select current_setting('synchronous_commit') as setting`.execute(asyncDb);
      expect(rows[0]?.setting).toBe('off');
    } finally {
      await asyncDb.destroy();
    }
  });

  it('returns from admission only once the audit row is flushed, even where commits are asynchronous by default', async () => {
    // An operator may run Postgres (or leash's role) with synchronous_commit = off: admission must still wait for
    // the flush before the vendor is called. Checked right after admission returns, before the WAL writer's next
    // round (up to wal_writer_delay, 200 ms by default) would flush an asynchronous commit anyway.
    const asyncDb = sessionsWith(tdb.url, { synchronous_commit: 'off' });
    try {
      const key = await keyFor(tdb.db, { policy: 'engine' });
      const auth = await authenticate(tdb.db, key.key);
      if (!auth.ok) throw new Error('the key did not authenticate');
      const id = uuidv7();
      const r = await admit(
        asyncDb,
        {
          keyId: auth.key.id,
          secretHash: auth.key.secret_hash,
          policyVersion: auth.key.policy.version,
          cost: 0,
          windows: [],
          loop: null,
        },
        {
          id,
          key_id: auth.key.id,
          agent: auth.key.agent,
          run_id: auth.key.run_id,
          policy: auth.key.policy.name,
          policy_version: auth.key.policy.version,
          tool: 'charge_test',
          vendor: 'testvendor',
          operation: 'POST /effects',
          account: null,
          request: {},
          args_hash: 'durability-check',
          sandbox: false,
          amount: null,
          currency: null,
          metadata: {},
        },
        deps.auditHash,
      );
      expect(r).toMatchObject({ admitted: true });
      // The audit row is written by an asynchronously committed transaction; admission ends with a second one that
      // writes a WAL record and commits synchronously, so by the time it returns the WAL is flushed past both.
      const lsn = 'durable_lsn' in r ? r.durable_lsn : undefined;
      expect(lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      const { rows } = await sql<{ flushed: boolean; setting: string }>`
      select pg_current_wal_flush_lsn() >= ${lsn}::pg_lsn as flushed, current_setting('synchronous_commit') as setting`.execute(
        asyncDb,
      );
      expect(rows[0]).toEqual({ flushed: true, setting: 'off' });
    } finally {
      await asyncDb.destroy();
    }
  });
});
