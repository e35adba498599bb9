// Covers approvals through the REST front door: the real stripe-node SDK gets a 403 in Stripe's error shape with
// approval_required for a refund over the threshold, and after approval the identical refund is admitted once.
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decideApproval } from '../src/approvals/store.js';
import { createLogger } from '../src/config/logger.js';
import { createPipeline, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { createAuthThrottle } from '../src/server/auth-throttle.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { restRoutes } from '../src/server/rest.js';
import { catalog, vendorApis } from '../tools/index.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';

let tdb: TestDatabase;
let fake: StripeFake;
let deps: PipelineDeps;
let http: RunningHttp;

beforeAll(async () => {
  tdb = await freshDatabase(8);
  fake = await startStripeFake(false);
  const config = testConfig({
    STRIPE_SECRET_KEY: 'sk_test_canary_rest_appr_1',
    LEASH_STRIPE_BASE_URL: fake.url,
  });
  deps = createPipeline({
    db: tdb.db,
    config,
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'silent' }),
  });
  const throttle = createAuthThrottle({ maxFailures: 100, windowMs: 60_000, trustProxyHops: 0 });
  http = await startHttpServer(deps, {
    host: '127.0.0.1',
    port: 0,
    routes: [restRoutes(deps, { apis: vendorApis, throttle })],
    throttle,
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'rest-held',
    tools: {},
    vendors: { stripe: { http: { 'POST /v1/refunds': { approval: { above_usd: 100, expires: '30m' } } } } },
  });
});

afterAll(async () => {
  await http.close();
  await fake.close();
  await tdb.close();
});

const refunds = () => fake.received.filter((r) => r.method === 'POST' && r.path === '/v1/refunds');

describe('approvals through the REST front door', () => {
  it('answers 403 approval_required in Stripe’s shape, then admits the identical refund once after approval', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
    const key = await keyFor(tdb.db, { policy: 'rest-held' });
    const stripe = new Stripe(key.key, {
      host: '127.0.0.1',
      port: Number(new URL(http.url).port),
      protocol: 'http',
      maxNetworkRetries: 0,
    });
    const refund = () => stripe.refunds.create({ payment_intent: p.payment_intent, amount: 15_000 });

    const held = await refund().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(held).toBeInstanceOf(Stripe.errors.StripePermissionError);
    const err = held as InstanceType<typeof Stripe.errors.StripePermissionError>;
    expect(err.statusCode).toBe(403);
    expect(err.message).toContain('approval_required');
    expect(refunds()).toHaveLength(0);

    const row = await tdb.db
      .selectFrom('approvals')
      .selectAll()
      .where('key_id', '=', key.id)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      status: 'pending',
      door: 'http',
      tool: 'stripe:POST /v1/refunds',
      usd_micros: 150_000_000,
    });
    expect(err.message).toContain(row.id);
    expect((await decideApproval(tdb.db, row.id, 'approved', 'test', undefined)).ok).toBe(true);

    const ok = await refund();
    expect(ok.amount).toBe(15_000);
    expect(refunds()).toHaveLength(1);
    await expect(refund()).rejects.toMatchObject({ statusCode: 403 });
    expect(refunds()).toHaveLength(1);
    await deps.settler.flush();
  });
});
