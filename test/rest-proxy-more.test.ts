// Covers more of the REST front door with the real stripe-node SDK: loop guard and hourly cap as Stripe rate-limit
// errors, vendor 4xx passed through with the reservation released, reconcile of a timed-out proxied refund, and
// manual-capture PaymentIntents.
import Stripe from 'stripe';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/config/logger.js';
import { createPipeline, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { createAuthThrottle } from '../src/server/auth-throttle.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { restRoutes } from '../src/server/rest.js';
import { catalog, vendorApis } from '../tools/index.js';
import { childEnv, runLeash } from './support/cli.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, GIVE_UP_AFTER_READ_MS, keyFor, testConfig } from './support/governance.js';
import { auditRows, caught, keySpend, startServe, type Served } from './support/rest.js';
import { startVendors, type Vendors } from './support/vendors.js';

let tdb: TestDatabase;
let vendors: Vendors;
let serve: Served;

const intentRule = { max_amount_usd: 50, customers: ['cus_alice', 'cus_bob'], capture_method: 'manual' };

beforeAll(async () => {
  tdb = await freshDatabase(6);
  vendors = await startVendors();
  await applyTestPolicy(tdb.db, catalog, {
    name: 'more',
    limits: { per_key_daily_usd: 100 },
    loop_guard: { identical_calls: 2, window: '10m' },
    tools: {},
    vendors: {
      stripe: {
        http: {
          'POST /v1/refunds': { max_amount_usd: 50, customers: ['cus_alice'] },
          'POST /v1/payment_intents': intentRule,
        },
      },
    },
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'hourly',
    limits: { per_key_daily_usd: 100, per_key_hourly_requests: 2 },
    tools: {},
    vendors: { stripe: { http: { 'POST /v1/payment_intents': intentRule } } },
  });
  serve = await startServe(tdb.url, vendors.env);
}, 180_000);

afterAll(async () => {
  await serve?.stop();
  await vendors?.close();
  await tdb?.close();
});

beforeEach(() => vendors.reset());

const stripeAt = (key: string, port: number, maxNetworkRetries = 0) =>
  new Stripe(key, { host: '127.0.0.1', port, protocol: 'http', maxNetworkRetries });
const stripeFor = (key: string, maxNetworkRetries = 0) => stripeAt(key, serve.port, maxNetworkRetries);

/** The key's only audit row once its settle has landed (settles are written off the answer path). */
async function settledRow(keyId: string, outcome: string) {
  await expect
    .poll(async () => (await auditRows(tdb.pool, keyId)).at(-1)?.outcome, { timeout: 20_000 })
    .toBe(outcome);
  return (await auditRows(tdb.pool, keyId)).at(-1)!;
}

const AUDIT_ID = /audit id [0-9a-f-]{36}/;

describe('loop guard and hourly cap', () => {
  it('answers the third identical payment intent with 429 loop_detected as StripeRateLimitError and sends Stripe nothing', async () => {
    const key = await keyFor(tdb.db, { policy: 'more' });
    const stripe = stripeFor(key.key);
    const params = { amount: 500, currency: 'usd', customer: 'cus_alice', capture_method: 'manual' as const };
    await stripe.paymentIntents.create(params);
    await stripe.paymentIntents.create(params);
    expect(vendors.stripe.received).toHaveLength(2);
    const e = await caught(stripe.paymentIntents.create(params));
    expect(e).toMatchObject({
      type: 'StripeRateLimitError',
      rawType: 'rate_limit_error',
      statusCode: 429,
      code: 'loop_detected',
    });
    expect(String(e.message)).toMatch(/\[leash loop_detected, audit id [0-9a-f-]{36}\]/);
    expect(vendors.stripe.received).toHaveLength(2);
    const rows = await auditRows(tdb.pool, key.id);
    expect(rows.map((r) => [r.decision, r.reason])).toEqual([
      ['allowed', null],
      ['allowed', null],
      ['denied', 'loop_detected'],
    ]);
    expect(String(e.message)).toContain(rows[2]!.id);
  });

  it('answers the call over per_key_hourly_requests with 429 request_limit_exceeded, which stripe-node does not retry', async () => {
    const key = await keyFor(tdb.db, { policy: 'hourly' });
    // Retries on: the answer's `stripe-should-retry: false` must keep stripe-node from trying again.
    const stripe = stripeFor(key.key, 2);
    const intent = (amount: number) =>
      stripe.paymentIntents.create({
        amount,
        currency: 'usd',
        customer: 'cus_bob',
        capture_method: 'manual',
      });
    await intent(100);
    await intent(200);
    const e = await caught(intent(300));
    expect(e).toMatchObject({
      type: 'StripeRateLimitError',
      statusCode: 429,
      code: 'request_limit_exceeded',
    });
    expect(String(e.message)).toMatch(/\[leash request_limit_exceeded, /);
    expect(String(e.message)).toMatch(AUDIT_ID);
    expect(vendors.stripe.received.map((r) => Number(r.form.get('amount')))).toEqual([100, 200]);
    const rows = await auditRows(tdb.pool, key.id);
    expect(rows.map((r) => r.decision)).toEqual(['allowed', 'allowed', 'denied']);
    expect(rows[2]?.reason).toBe('request_limit_exceeded');
  });
});

describe('vendor refusals', () => {
  it.each([
    ['more than is left to refund', { amount: 5000, amount_refunded: 4000 }, 2000, 'amount_too_large'],
    [
      'a charge already refunded in full',
      { amount: 1000, amount_refunded: 1000 },
      500,
      'charge_already_refunded',
    ],
  ])(
    'passes Stripe’s 400 for %s through unchanged, settles the row failed and releases its reservation',
    async (_what, payment, amount, code) => {
      const p = vendors.stripe.addPayment({ customer: 'cus_alice', ...payment });
      const key = await keyFor(tdb.db, { policy: 'more' });
      const e = await caught(stripeFor(key.key).refunds.create({ payment_intent: p.payment_intent, amount }));
      expect(e).toMatchObject({ type: 'StripeInvalidRequestError', statusCode: 400, code });
      expect(String(e.message)).not.toContain('[leash');
      expect(e.requestId).toMatch(/^req_/);
      expect(vendors.stripe.received.filter((r) => r.method === 'POST')).toHaveLength(1);
      expect(p.amount_refunded).toBe(payment.amount_refunded);
      const row = await settledRow(key.id, 'failed');
      expect(row).toMatchObject({
        decision: 'allowed',
        http_status: 400,
        reserved_micros: 0,
        cost_micros: 0,
      });
      expect(row.usd_micros).toBe(amount * 10_000);
      expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 0, reserved: 0 });
    },
  );
});

describe('reconcile of a proxied write', () => {
  // `leash serve` has no setting for the vendor timeout (it is 20 s), so this door runs in-process with a short one
  // (the refund's payment lookup is still answered; the refund itself never is).
  let deps: PipelineDeps;
  let http: RunningHttp;

  beforeAll(async () => {
    deps = createPipeline({
      db: tdb.db,
      config: testConfig(vendors.env),
      catalog,
      sandbox: false,
      log: createLogger({ logLevel: 'silent' }),
      vendorTimeoutMs: GIVE_UP_AFTER_READ_MS,
    });
    const throttle = createAuthThrottle({ maxFailures: 50, windowMs: 60_000 });
    http = await startHttpServer(deps, {
      host: '127.0.0.1',
      port: 0,
      routes: [restRoutes(deps, { apis: vendorApis, throttle })],
      throttle,
    });
  });
  afterAll(async () => {
    await http?.close();
  });

  const reconcileCli = async () => {
    const r = await runLeash(
      ['reconcile', '--grace', '0', '--json'],
      childEnv({ DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent/leash-rest-home', ...vendors.env }),
    );
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { rows: { id: string; before: string; after: string }[] };
  };

  it('leaves a timed-out refund unknown with its reservation held, then `leash reconcile` settles it once with the same Idempotency-Key', async () => {
    const p = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 5000 });
    const key = await keyFor(tdb.db, { policy: 'more' });
    // The fake refunds and never answers: leash gives up.
    const refunded = vendors.stripe.inject({ mode: 'hang_acted', path: '/v1/refunds' });
    const e = await caught(
      stripeAt(key.key, http.port).refunds.create({ payment_intent: p.payment_intent, amount: 1200 }),
    );
    expect(e).toMatchObject({ type: 'StripeAPIError', statusCode: 504, code: 'vendor_timeout' });
    expect(String(e.message)).toMatch(AUDIT_ID);
    await deps.settler.flush();
    const [row] = await auditRows(tdb.pool, key.id);
    expect(row).toMatchObject({ outcome: 'unknown', reserved_micros: 12_000_000, cost_micros: 0 });
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 0, reserved: 12_000_000 });
    await refunded;
    expect(p.amount_refunded).toBe(1200);
    const first = await reconcileCli();
    expect(first.rows.find((r) => r.id === row!.id)).toMatchObject({ before: 'unknown', after: 'succeeded' });
    expect(await auditRows(tdb.pool, key.id)).toMatchObject([
      { outcome: 'succeeded', reserved_micros: 0, cost_micros: 12_000_000 },
    ]);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 12_000_000, reserved: 0 });

    const second = await reconcileCli();
    expect(second.rows.find((r) => r.id === row!.id)).toBeUndefined();
    const posts = vendors.stripe.received.filter((r) => r.method === 'POST' && r.path === '/v1/refunds');
    expect(posts).toHaveLength(2);
    // stripe-node sends its own Idempotency-Key on every POST; leash forwards it namespaced to the vault key and
    // replays with exactly the key Stripe saw.
    const sent = row!.metadata.idempotency_key;
    expect(row!.metadata.agent_idempotency_key).toMatch(/^stripe-node-retry-/);
    expect(sent).toBe(`leash_${key.id}_${String(row!.metadata.agent_idempotency_key)}`);
    expect(posts.map((r) => r.headers['idempotency-key'])).toEqual([sent, sent]);
    expect(p.amount_refunded).toBe(1200);
    expect(
      [...vendors.stripe.refunds.values()].filter((r) => r.payment_intent === p.payment_intent),
    ).toHaveLength(1);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 12_000_000, reserved: 0 });
  }, 90_000); // runs `leash reconcile` twice in new processes: slow on a busy machine
});

describe('payment intents', () => {
  it('creates a manual-capture intent within max_amount_usd for a listed customer and reserves its amount', async () => {
    const key = await keyFor(tdb.db, { policy: 'more' });
    const pi = await stripeFor(key.key).paymentIntents.create(
      { amount: 1500, currency: 'usd', customer: 'cus_bob', capture_method: 'manual' },
      { idempotencyKey: 'order-7-authorise' },
    );
    expect(pi).toMatchObject({
      object: 'payment_intent',
      amount: 1500,
      currency: 'usd',
      customer: 'cus_bob',
      capture_method: 'manual',
      status: 'requires_capture',
      amount_capturable: 1500,
    });
    expect(pi.id).toMatch(/^pi_/);
    const [got] = vendors.stripe.received;
    expect(got).toMatchObject({ method: 'POST', path: '/v1/payment_intents' });
    expect(Object.fromEntries(got!.form)).toEqual({
      amount: '1500',
      currency: 'usd',
      customer: 'cus_bob',
      capture_method: 'manual',
    });
    expect(got?.headers['idempotency-key']).toBe(`leash_${key.id}_order-7-authorise`);
    const row = await settledRow(key.id, 'succeeded');
    expect(row).toMatchObject({ decision: 'allowed', usd_micros: 15_000_000, cost_micros: 15_000_000 });
    const spend = await keySpend(tdb.pool, key.id);
    expect(spend.spent + spend.reserved).toBe(15_000_000);
  });

  it.each([
    ['a customer off the list', { amount: 1500, customer: 'cus_eve' }, 'customer_not_allowed'],
    ['an amount over max_amount_usd', { amount: 5001, customer: 'cus_bob' }, 'amount_over_limit'],
  ])(
    'refuses a manual-capture intent for %s with 403 and sends Stripe nothing',
    async (_what, params, code) => {
      const key = await keyFor(tdb.db, { policy: 'more' });
      const e = await caught(
        stripeFor(key.key).paymentIntents.create({ ...params, currency: 'usd', capture_method: 'manual' }),
      );
      expect(e).toMatchObject({ type: 'StripePermissionError', statusCode: 403, code });
      expect(vendors.requests()).toBe(0);
      expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 0, reserved: 0 });
    },
  );
});
