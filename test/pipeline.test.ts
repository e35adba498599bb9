// Covers the governance pipeline end to end with a test tool against a fake HTTP vendor and real Postgres:
// success, denials (zero vendor requests), no cap overshoot across two pools, revoke, expiry, unknown outcomes.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { revokeKeys } from '../src/keys/vault-keys.js';
import { reconcile, startReconcileLoop } from '../src/pipeline/reconcile.js';
import type { PipelineDeps } from '../src/pipeline/run-tool.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { cli } from './support/run-cli.js';
import {
  applyTestPolicy,
  GIVE_UP_MS,
  keyFor,
  pipelineFor,
  settledRun,
  readAuditRow,
} from './support/governance.js';
import { startFakeVendor, testCatalog, type FakeVendor } from './fakes/test-tool.js';

let tdb: TestDatabase;
let fake: FakeVendor;
let deps: PipelineDeps;
/** The same pipeline with a short vendor deadline, for calls whose fake never answers. */
let givesUp: PipelineDeps;
const logs: string[] = [];

beforeAll(async () => {
  tdb = await freshDatabase(20);
  fake = await startFakeVendor();
  deps = pipelineFor(tdb.db, testCatalog(fake), undefined, logs);
  givesUp = pipelineFor(tdb.db, testCatalog(fake), undefined, logs, GIVE_UP_MS);
  await applyTestPolicy(tdb.db, deps.catalog, {
    name: 'charges',
    limits: { daily_usd: 10, per_key_daily_usd: 10 },
    tools: { charge_test: { max_amount_usd: 50, customers: ['cus_A'] } },
    loop_guard: { identical_calls: 2, window: '10m' },
  });
  await applyTestPolicy(tdb.db, deps.catalog, {
    name: 'hourly',
    limits: { hourly_requests: 25 },
    tools: { charge_test: null },
  });
});

afterAll(async () => {
  await fake.close();
  await tdb.close();
});

beforeEach(() => {
  fake.received.length = 0;
  fake.delayMs = 0;
  fake.failWith = undefined;
});

const charge = (cents: number, customer = 'cus_A', extra: Record<string, unknown> = {}) => ({
  amount_cents: cents,
  customer,
  ...extra,
});

const auditRow = (id: string | null) => readAuditRow(tdb.db, id);

describe('runTool', () => {
  it('calls the vendor once with an idempotency key derived from the audit row and settles the cost', async () => {
    // A policy of its own, so what it has left does not depend on the tests before it.
    await applyTestPolicy(tdb.db, deps.catalog, {
      name: 'charges-once',
      limits: { daily_usd: 10, per_key_daily_usd: 10 },
      tools: { charge_test: { max_amount_usd: 50, customers: ['cus_A'] } },
    });
    const key = await keyFor(tdb.db, { policy: 'charges-once' });
    const r = await settledRun(deps, key.key, 'charge_test', charge(120));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.output).toMatchObject({ amount: 120 });
    expect(fake.received).toHaveLength(1);
    expect(fake.received[0]?.headers['idempotency-key']).toBe(`leash_${r.audit_id}`);
    expect(r.remaining_micros).toBe(10_000_000 - 1_200_000);
    const row = await auditRow(r.audit_id);
    expect(row).toMatchObject({
      key_id: key.id,
      agent: 'agent-1',
      run_id: 'run-1',
      policy: 'charges-once',
      policy_version: 1,
      tool: 'charge_test',
      vendor: 'testvendor',
      operation: 'POST /effects',
      decision: 'allowed',
      outcome: 'succeeded',
      reserved_micros: 0,
      cost_micros: 1_200_000,
      cost_status: 'settled',
      amount: 120,
      currency: 'usd',
    });
    // The effect the fake made for this call's idempotency key.
    expect(row.vendor_object_id).toBe(fake.effects.get(`leash_${r.audit_id}`)?.id);
    expect(row.vendor_object_id).toMatch(/^eff_\d+$/);
    expect(row.latency_ms).toBeGreaterThanOrEqual(0);
    const win = await tdb.db
      .selectFrom('spend_windows')
      .selectAll()
      .where('scope', '=', `key:${key.id}`)
      .executeTakeFirstOrThrow();
    expect(win).toMatchObject({ spent_micros: 1_200_000, reserved_micros: 0 });
  });

  it.each([
    ['amount_over_limit', charge(5001)],
    ['customer_not_allowed', charge(100, 'cus_Z')],
  ])('denies %s, audits the reason and sends the vendor nothing', async (code, args) => {
    const key = await keyFor(tdb.db, { policy: 'charges' });
    const r = await settledRun(deps, key.key, 'charge_test', args);
    expect(r).toMatchObject({ ok: false, failure: { code, retryable: false } });
    expect(fake.received).toHaveLength(0);
    if (r.ok) return;
    const row = await auditRow(r.failure.audit_id);
    expect(row).toMatchObject({
      decision: 'denied',
      reason: code,
      agent: 'agent-1',
      run_id: 'run-1',
      key_id: key.id,
      tool: 'charge_test',
      reserved_micros: 0,
      cost_micros: 0,
    });
  });

  it('rejects bad input naming the field, records one denied row and calls nothing', async () => {
    const key = await keyFor(tdb.db, { policy: 'charges' });
    const before = await tdb.db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    const r = await settledRun(deps, key.key, 'charge_test', { amount_cents: -5, customer: 'cus_A' });
    // Retryable: the caller can fix its arguments and call again.
    expect(r).toMatchObject({ ok: false, failure: { code: 'invalid_input', retryable: true } });
    if (!r.ok) expect(r.failure.message).toContain('amount_cents');
    const after = await tdb.db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    expect(Number(after.n)).toBe(Number(before.n) + 1);
    if (!r.ok) {
      const row = await tdb.db
        .selectFrom('audit_log')
        .select(['decision', 'reason', 'outcome', 'reserved_micros'])
        .where('id', '=', r.failure.audit_id ?? '00000000-0000-0000-0000-000000000000')
        .executeTakeFirstOrThrow();
      expect(row).toEqual({
        decision: 'denied',
        reason: 'invalid_input',
        outcome: 'none',
        reserved_micros: 0,
      });
    }
    expect(fake.received).toHaveLength(0);
  });

  it('denies an unknown or wrong vault key as key_invalid', async () => {
    const key = await keyFor(tdb.db, { policy: 'charges' });
    const wrong = key.key.slice(0, -4) + 'aaaa';
    for (const k of [undefined, 'nonsense', wrong]) {
      const r = await settledRun(deps, k, 'charge_test', charge(1));
      expect(r).toMatchObject({ ok: false, failure: { code: 'key_invalid' } });
    }
    expect(fake.received).toHaveLength(0);
  });

  it('denies the third identical call as loop_detected', async () => {
    const key = await keyFor(tdb.db, { policy: 'charges' });
    expect((await settledRun(deps, key.key, 'charge_test', charge(7))).ok).toBe(true);
    expect((await settledRun(deps, key.key, 'charge_test', charge(7))).ok).toBe(true);
    fake.received.length = 0;
    const third = await settledRun(deps, key.key, 'charge_test', charge(7));
    expect(third).toMatchObject({ ok: false, failure: { code: 'loop_detected' } });
    expect(fake.received).toHaveLength(0);
    expect((await settledRun(deps, key.key, 'charge_test', charge(8))).ok).toBe(true);
  });

  it('denies a key after revoke on every pool, with no cache outliving the revoke', async () => {
    const key = await keyFor(tdb.db, { policy: 'charges' });
    const other = await tdb.openPool(4);
    try {
      const depsB = pipelineFor(other.db, deps.catalog);
      expect((await settledRun(depsB, key.key, 'charge_test', charge(1))).ok).toBe(true);
      expect(await revokeKeys(tdb.db, { id: key.id })).toEqual([key.id]);
      fake.received.length = 0;
      for (const d of [deps, depsB]) {
        const r = await settledRun(d, key.key, 'charge_test', charge(2));
        expect(r).toMatchObject({ ok: false, failure: { code: 'key_revoked' } });
      }
      expect(fake.received).toHaveLength(0);
    } finally {
      await other.close();
    }
  });

  it('denies an expired key as key_expired', async () => {
    const key = await keyFor(tdb.db, { policy: 'charges', expiresAt: new Date(Date.now() - 1000) });
    const r = await settledRun(deps, key.key, 'charge_test', charge(1));
    expect(r).toMatchObject({ ok: false, failure: { code: 'key_expired' } });
    expect(fake.received).toHaveLength(0);
    if (!r.ok) expect((await auditRow(r.failure.audit_id)).reason).toBe('key_expired');
  });

  it('releases the whole reservation when the vendor definitely refuses', async () => {
    const key = await keyFor(tdb.db, { policy: 'charges' });
    fake.failWith = 402;
    const r = await settledRun(deps, key.key, 'charge_test', charge(300));
    expect(r).toMatchObject({ ok: false, failure: { code: 'vendor_rejected' } });
    if (r.ok) return;
    expect(await auditRow(r.failure.audit_id)).toMatchObject({
      outcome: 'failed',
      reserved_micros: 0,
      cost_micros: 0,
      http_status: 402,
    });
    const win = await tdb.db
      .selectFrom('spend_windows')
      .selectAll()
      .where('scope', '=', `key:${key.id}`)
      .executeTakeFirstOrThrow();
    expect(win).toMatchObject({ spent_micros: 0, reserved_micros: 0 });
    expect(JSON.stringify(r)).not.toContain('tok_canary_123456');
    expect(logs.join('\n')).not.toContain('tok_canary_123456');
  });
});

describe('caps under concurrency', () => {
  async function burst(policy: string, cents: number) {
    const a = await tdb.openPool(16);
    const b = await tdb.openPool(16);
    try {
      const depsA = pipelineFor(a.db, deps.catalog, undefined, undefined, 30_000);
      const depsB = pipelineFor(b.db, deps.catalog, undefined, undefined, 30_000);
      const key = await keyFor(tdb.db, { policy, agent: `burst-${policy}` });
      fake.received.length = 0;
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          settledRun(i % 2 ? depsA : depsB, key.key, 'charge_test', charge(cents)),
        ),
      );
      return { key, results };
    } finally {
      await a.close();
      await b.close();
    }
  }

  it('admits exactly 33 of 200 concurrent $0.30 calls against a $10.00 daily cap across two pools', async () => {
    await applyTestPolicy(tdb.db, deps.catalog, {
      name: 'burst',
      limits: { daily_usd: 10 },
      tools: { charge_test: null },
    });
    const { results } = await burst('burst', 30);
    const ok = results.filter((r) => r.ok).length;
    const codes = new Set(results.flatMap((r) => (r.ok ? [] : [r.failure.code])));
    expect(ok).toBe(33);
    expect([...codes]).toEqual(['budget_exceeded']);
    expect(fake.received).toHaveLength(33);
    const win = await tdb.db
      .selectFrom('spend_windows')
      .selectAll()
      .where('scope', '=', 'policy:burst')
      .executeTakeFirstOrThrow();
    expect(win.spent_micros).toBe(9_900_000);
    expect(win.reserved_micros).toBe(0);
    expect(win.spent_micros).toBeLessThanOrEqual(10_000_000);
    const denied = results.find((r) => !r.ok);
    if (denied && !denied.ok) {
      expect(denied.failure.message).toContain('retrying will not help');
      expect(denied.failure.details).toMatchObject({ cap_micros: 10_000_000 });
    }
  });

  it('admits exactly 25 of 200 concurrent calls against an hourly cap of 25 requests across two pools', async () => {
    const { results } = await burst('hourly', 1);
    expect(results.filter((r) => r.ok).length).toBe(25);
    expect(new Set(results.flatMap((r) => (r.ok ? [] : [r.failure.code])))).toEqual(
      new Set(['request_limit_exceeded']),
    );
    expect(fake.received).toHaveLength(25);
    const win = await tdb.db
      .selectFrom('spend_windows')
      .selectAll()
      .where('scope', '=', 'policy:hourly')
      .executeTakeFirstOrThrow();
    expect(win.requests).toBe(25);
  });
});

describe('unknown outcomes', () => {
  it('leaves a timed-out call unknown with its reservation held, and reconcile settles it without a second effect', async () => {
    const key = await keyFor(tdb.db, { policy: 'charges', agent: 'slow' });
    // The fake performs the effect and never answers: the client gives up.
    const acted = fake.inject({ mode: 'hang_acted' });
    const r = await settledRun(givesUp, key.key, 'charge_test', charge(250));
    expect(r).toMatchObject({ ok: false, failure: { code: 'vendor_timeout', retryable: false } });
    if (r.ok) return;
    const id = r.failure.audit_id ?? '';
    expect(await auditRow(id)).toMatchObject({
      outcome: 'unknown',
      reserved_micros: 2_500_000,
      cost_micros: 0,
    });
    let win = await tdb.db
      .selectFrom('spend_windows')
      .selectAll()
      .where('scope', '=', `key:${key.id}`)
      .executeTakeFirstOrThrow();
    expect(win).toMatchObject({ reserved_micros: 2_500_000, spent_micros: 0 });
    await acted;
    expect(fake.effects.size).toBeGreaterThan(0);
    const effectsBefore = fake.effects.size;

    const summary = await reconcile(deps, { graceSeconds: 0 });
    expect(summary.rows.find((x) => x.id === id)).toMatchObject({ after: 'succeeded' });
    expect(fake.effects.size).toBe(effectsBefore);
    const replays = fake.received.filter((x) => x.headers['idempotency-key'] === `leash_${id}`);
    expect(replays).toHaveLength(2);
    expect(await auditRow(id)).toMatchObject({
      outcome: 'succeeded',
      reserved_micros: 0,
      cost_micros: 2_500_000,
    });
    win = await tdb.db
      .selectFrom('spend_windows')
      .selectAll()
      .where('scope', '=', `key:${key.id}`)
      .executeTakeFirstOrThrow();
    expect(win).toMatchObject({ reserved_micros: 0, spent_micros: 2_500_000 });

    const again = await reconcile(deps, { graceSeconds: 0 });
    expect(again.rows.find((x) => x.id === id)).toBeUndefined();
  });
});

describe('background reconcile', () => {
  it('settles an unknown call on its own, as `leash serve` does every minute', async () => {
    const key = await keyFor(tdb.db, { policy: 'charges', agent: 'bg' });
    const acted = fake.inject({ mode: 'hang_acted' });
    const r = await settledRun(givesUp, key.key, 'charge_test', charge(90));
    expect(r).toMatchObject({ ok: false, failure: { code: 'vendor_timeout' } });
    const id = r.ok ? '' : (r.failure.audit_id ?? '');
    await acted;
    const loop = startReconcileLoop(deps, { everyMs: 100, graceSeconds: 0 });
    try {
      await expect
        .poll(async () => (await auditRow(id)).outcome, { timeout: 20_000, interval: 100 })
        .toBe('succeeded');
    } finally {
      await loop.stop();
    }
  });
});

describe('leash reconcile --settle', () => {
  it('lets an operator fail an unknown call by hand, releasing its reservation, once', async () => {
    const key = await keyFor(tdb.db, { policy: 'charges', agent: 'manual' });
    fake.failWith = 503; // a 5xx: the outcome is unknown
    const r = await settledRun(deps, key.key, 'charge_test', charge(40));
    expect(r).toMatchObject({ ok: false, failure: { code: 'vendor_unavailable' } });
    const id = r.ok ? '' : (r.failure.audit_id ?? '');
    expect(await auditRow(id)).toMatchObject({ outcome: 'unknown', reserved_micros: 400_000 });
    const env = { DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent', LEASH_LOG: 'silent' };
    const bad = await cli(['reconcile', '--settle', id, '--outcome', 'maybe'], env);
    expect(bad.code).toBe(2);
    const done = await cli(['reconcile', '--settle', id, '--outcome', 'failed'], env);
    expect(done.code, done.stderr).toBe(0);
    expect(done.stdout).toContain('settled: failed');
    expect(await auditRow(id)).toMatchObject({ outcome: 'failed', reserved_micros: 0, cost_micros: 0 });
    const win = await tdb.db
      .selectFrom('spend_windows')
      .selectAll()
      .where('scope', '=', `key:${key.id}`)
      .executeTakeFirstOrThrow();
    expect(win).toMatchObject({ reserved_micros: 0, spent_micros: 0 });
    const again = await cli(['reconcile', '--settle', id, '--outcome', 'succeeded'], env);
    expect(again.code).toBe(1);
    expect(again.stdout).toContain('not changed');
  });
});
