// Covers issue_refund and get_payment through the pipeline with the real Stripe SDK against a fake Stripe.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PipelineDeps } from '../src/pipeline/run-tool.js';
import { reconcile } from '../src/pipeline/reconcile.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { stripeVendor } from '../tools/stripe/client.js';
import { getPayment } from '../tools/stripe/get-payment.js';
import { issueRefund } from '../tools/stripe/issue-refund.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import {
  applyTestPolicy,
  GIVE_UP_AFTER_READ_MS,
  keyFor,
  pipelineFor,
  testConfig,
  settledRun,
} from './support/governance.js';

const CANARY = 'sk_test_canary_7f3e9a1b2c4d';
let tdb: TestDatabase;
let fake: StripeFake;
let deps: PipelineDeps;
let routed: PipelineDeps;
/** The same pipeline with a short vendor deadline, for refunds whose fake never answers. */
let givesUp: PipelineDeps;
const logs: string[] = [];
const catalog: Catalog = {
  tools: new Map([
    [issueRefund.name, issueRefund],
    [getPayment.name, getPayment],
  ]),
  vendors: new Map([['stripe', stripeVendor]]),
};

beforeAll(async () => {
  tdb = await freshDatabase(8);
  fake = await startStripeFake(false);
  const config = testConfig({ STRIPE_SECRET_KEY: CANARY, LEASH_STRIPE_BASE_URL: fake.url });
  deps = pipelineFor(tdb.db, catalog, config, logs);
  routed = pipelineFor(tdb.db, catalog, config, logs);
  givesUp = pipelineFor(tdb.db, catalog, config, logs, GIVE_UP_AFTER_READ_MS);
  await applyTestPolicy(tdb.db, catalog, {
    name: 'refunds',
    limits: { daily_usd: 100 },
    tools: {
      issue_refund: { max_amount_usd: 50, customers: ['cus_A'] },
      get_payment: { customers: ['cus_A'] },
    },
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'connected',
    vendors: { stripe: { account: 'acct_connected_1' } },
    tools: { issue_refund: null },
  });
});

afterAll(async () => {
  await fake.close();
  await tdb.close();
});

beforeEach(() => {
  fake.received.length = 0;
  fake.delayMs = 0;
});

const refundPosts = () => fake.received.filter((r) => r.method === 'POST' && r.path === '/v1/refunds');

describe('issue_refund', () => {
  it('looks the payment up, refunds the amount with the audit-derived idempotency key and records the cost', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 4000 });
    const key = await keyFor(tdb.db, { policy: 'refunds' });
    const r = await settledRun(deps, key.key, 'issue_refund', {
      payment_intent: p.payment_intent,
      amount: 1500,
      reason: 'requested_by_customer',
    });
    expect(r.ok, JSON.stringify(r)).toBe(true);
    if (!r.ok) return;
    expect(r.output).toMatchObject({
      amount: 1500,
      currency: 'usd',
      customer: 'cus_A',
      refundable_after: 2500,
      status: 'succeeded',
    });
    const [post] = refundPosts();
    expect(post?.form.get('payment_intent')).toBe(p.payment_intent);
    expect(post?.form.get('amount')).toBe('1500');
    expect(post?.form.get('reason')).toBe('requested_by_customer');
    expect(post?.headers['idempotency-key']).toBe(`leash_${r.audit_id}`);
    expect(post?.headers.authorization).toBe(`Bearer ${CANARY}`);
    expect(post?.headers['stripe-account']).toBeUndefined();
    const row = await tdb.db
      .selectFrom('audit_log')
      .selectAll()
      .where('id', '=', r.audit_id)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      outcome: 'succeeded',
      cost_micros: 15_000_000,
      amount: 1500,
      currency: 'usd',
      operation: 'POST /v1/refunds',
    });
    expect(row.vendor_object_id).toMatch(/^re_/);
  });

  it('refunds the remaining refundable amount when no amount is given', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 3000, amount_refunded: 1000 });
    const key = await keyFor(tdb.db, { policy: 'refunds' });
    const r = await settledRun(deps, key.key, 'issue_refund', { charge: p.charge });
    expect(r).toMatchObject({ ok: true, output: { amount: 2000 } });
    expect(refundPosts()[0]?.form.get('charge')).toBe(p.charge);
  });

  it('routes to the policy account with the Stripe-Account header', async () => {
    const p = fake.addPayment({ customer: 'cus_X', amount: 500 });
    const key = await keyFor(tdb.db, { policy: 'connected' });
    const r = await settledRun(routed, key.key, 'issue_refund', { payment_intent: p.payment_intent });
    expect(r.ok).toBe(true);
    expect(fake.received.every((x) => x.headers['stripe-account'] === 'acct_connected_1')).toBe(true);
    expect(fake.received.length).toBe(2);
  });

  it.each([
    ['amount_over_limit', { customer: 'cus_A', amount: 9000 }, {}],
    ['customer_not_allowed', { customer: 'cus_B', amount: 1000 }, {}],
    ['currency_not_supported', { customer: 'cus_A', amount: 1000, currency: 'gbp' }, {}],
  ])('denies %s after the read-only lookup and sends no refund', async (code, payment, args) => {
    const p = fake.addPayment(payment);
    const key = await keyFor(tdb.db, { policy: 'refunds' });
    const r = await settledRun(deps, key.key, 'issue_refund', { payment_intent: p.payment_intent, ...args });
    expect(r).toMatchObject({ ok: false, failure: { code } });
    expect(refundPosts()).toHaveLength(0);
    if (!r.ok) {
      const row = await tdb.db
        .selectFrom('audit_log')
        .selectAll()
        .where('id', '=', r.failure.audit_id ?? '')
        .executeTakeFirstOrThrow();
      expect(row).toMatchObject({ decision: 'denied', reason: code });
    }
  });

  it('denies with facts_unavailable when the payment cannot be read, and never refunds', async () => {
    const key = await keyFor(tdb.db, { policy: 'refunds' });
    const r = await settledRun(deps, key.key, 'issue_refund', { payment_intent: 'pi_missing' });
    expect(r).toMatchObject({
      ok: false,
      failure: { code: 'facts_unavailable', vendor: { name: 'stripe', kind: 'rejected', status: 404 } },
    });
    expect(refundPosts()).toHaveLength(0);
  });

  it('rejects input with both or neither payment reference, naming the field', async () => {
    const key = await keyFor(tdb.db, { policy: 'refunds' });
    for (const args of [{}, { payment_intent: 'pi_1', charge: 'ch_1' }, { payment_intent: 'nope' }]) {
      const r = await settledRun(deps, key.key, 'issue_refund', args);
      expect(r).toMatchObject({ ok: false, failure: { code: 'invalid_input' } });
      if (!r.ok) expect(r.failure.message).toContain('payment_intent');
    }
    expect(fake.received).toHaveLength(0);
  });

  it('maps a Stripe refusal to vendor_rejected and releases the reservation, leaking no key even when the error echoes it', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 1000 });
    const key = await keyFor(tdb.db, { policy: 'refunds' });
    // The lookup succeeds; the refund POST fails with an error that echoes the key.
    fake.failNext(
      400,
      {
        type: 'invalid_request_error',
        code: 'charge_already_refunded',
        message: `Charge already refunded (key ${CANARY})`,
      },
      '/v1/refunds',
    );
    const r = await settledRun(deps, key.key, 'issue_refund', {
      payment_intent: p.payment_intent,
      amount: 1,
    });
    expect(r).toMatchObject({
      ok: false,
      failure: { code: 'vendor_rejected', vendor: { code: 'charge_already_refunded', status: 400 } },
    });
    expect(refundPosts()).toHaveLength(1);
    const all =
      JSON.stringify(r) +
      JSON.stringify((await tdb.pool.query('select * from audit_log')).rows) +
      logs.join('\n');
    expect(all).not.toContain(CANARY);
  });

  it('leaves a timed-out refund unknown and reconcile replays it without a second refund', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 2000 });
    const key = await keyFor(tdb.db, { policy: 'refunds' });
    // The fake refunds and never answers: the client gives up.
    const refunded = fake.inject({ mode: 'hang_acted', path: '/v1/refunds' });
    const r = await settledRun(givesUp, key.key, 'issue_refund', {
      payment_intent: p.payment_intent,
      amount: 700,
    });
    expect(r).toMatchObject({ ok: false, failure: { code: 'vendor_timeout' } });
    await refunded;
    const id = r.ok ? '' : (r.failure.audit_id ?? '');
    expect(
      await tdb.db
        .selectFrom('audit_log')
        .select(['outcome', 'reserved_micros'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow(),
    ).toEqual({ outcome: 'unknown', reserved_micros: 7_000_000 });
    const summary = await reconcile(deps, { graceSeconds: 0 });
    expect(summary.rows.find((x) => x.id === id)?.after).toBe('succeeded');
    expect(p.amount_refunded).toBe(700);
    expect([...fake.refunds.values()].filter((x) => x.payment_intent === p.payment_intent)).toHaveLength(1);
    expect(
      await tdb.db
        .selectFrom('audit_log')
        .select(['outcome', 'cost_micros', 'reserved_micros'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow(),
    ).toEqual({ outcome: 'succeeded', cost_micros: 7_000_000, reserved_micros: 0 });
  });
});

describe('get_payment', () => {
  it('returns what is refundable for an allowed customer in one vendor read, at no cost', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 5000, amount_refunded: 1200 });
    const key = await keyFor(tdb.db, { policy: 'refunds' });
    const r = await settledRun(deps, key.key, 'get_payment', { payment_intent: p.payment_intent });
    expect(r).toMatchObject({
      ok: true,
      output: { amount: 5000, amount_refunded: 1200, refundable: 3800, customer: 'cus_A' },
    });
    expect(fake.received).toHaveLength(1);
  });

  it('denies reading a payment of a customer outside the allowlist', async () => {
    const p = fake.addPayment({ customer: 'cus_B', amount: 5000 });
    const key = await keyFor(tdb.db, { policy: 'refunds' });
    const r = await settledRun(deps, key.key, 'get_payment', { payment_intent: p.payment_intent });
    expect(r).toMatchObject({ ok: false, failure: { code: 'customer_not_allowed' } });
  });
});
