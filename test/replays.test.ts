// Covers replays: a vendor answer that repeats an earlier call of the same key (Stripe's Idempotent-Replayed, an
// object id another row of the key owns, Resend's idempotent answer) costs nothing, links to the first row and gives
// its reservation back, through both doors; and `leash reconcile` corrects rows the old settle counted twice.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Resend } from 'resend';
import { sql } from 'kysely';
import Stripe from 'stripe';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryAudit } from '../src/audit/query.js';
import { watchAudit, type AuditEvent } from '../src/audit/watch.js';
import { uuidv7 } from '../src/audit/uuid.js';
import { admit, type AuditDraft } from '../src/audit/write.js';
import { formatAuditLine } from '../src/cli/audit-format.js';
import { createLogger } from '../src/config/logger.js';
import { spendReport } from '../src/ledger/spend.js';
import { windowsFor } from '../src/ledger/windows.js';
import { reconcile } from '../src/pipeline/reconcile.js';
import { createPipeline, runTool, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { createAuthThrottle } from '../src/server/auth-throttle.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { restRoutes } from '../src/server/rest.js';
import { catalog, vendorApis } from '../tools/index.js';
import { startResendFake, type ResendFake } from '../tools/resend/sandbox.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';
import { auditRows, keySpend } from './support/rest.js';
import { cli } from './support/run-cli.js';

const FROM = 'Support <support@acme.com>';
const ENV = {
  STRIPE_SECRET_KEY: 'sk_test_canary_replays_1',
  RESEND_API_KEY: 're_canary_replays_1',
};
let tdb: TestDatabase;
let stripe: StripeFake;
let resend: ResendFake;
/** A replica with the usual vendor timeout, and one that gives up on the vendor after 250 ms. */
let deps: PipelineDeps;
let slow: PipelineDeps;
let http: RunningHttp;
let slowHttp: RunningHttp;

async function serve(d: PipelineDeps): Promise<RunningHttp> {
  const throttle = createAuthThrottle({ maxFailures: 100, windowMs: 60_000, trustProxyHops: 0 });
  return startHttpServer(d, {
    host: '127.0.0.1',
    port: 0,
    routes: [restRoutes(d, { apis: vendorApis, throttle })],
    throttle,
  });
}

beforeAll(async () => {
  tdb = await freshDatabase(8);
  stripe = await startStripeFake(false);
  resend = await startResendFake();
  const config = testConfig({
    ...ENV,
    LEASH_STRIPE_BASE_URL: stripe.url,
    LEASH_RESEND_BASE_URL: resend.url,
  });
  const make = (vendorTimeoutMs: number) =>
    createPipeline({
      db: tdb.db,
      config,
      catalog,
      sandbox: false,
      log: createLogger({ logLevel: 'silent' }),
      vendorTimeoutMs,
    });
  deps = make(5_000);
  slow = make(250);
  [http, slowHttp] = [await serve(deps), await serve(slow)];
  await applyTestPolicy(tdb.db, catalog, {
    name: 'replays',
    limits: { per_key_daily_usd: 48 },
    tools: { issue_refund: { max_amount_usd: 50 }, get_budget: {} },
    vendors: {
      stripe: { http: { 'POST /v1/refunds': { max_amount_usd: 50 } } },
      resend: { http: { 'POST /emails': { from: FROM, to_domains: ['acme.com'] } } },
    },
  });
});

afterAll(async () => {
  await Promise.all([http?.close(), slowHttp?.close()]);
  await Promise.all([stripe?.close(), resend?.close()]);
  await tdb?.close();
});

beforeEach(() => {
  stripe.received.length = 0;
  resend.received.length = 0;
  stripe.delayMs = 0;
});

const settled = () => Promise.all([deps.settler.flush(), slow.settler.flush()]);
const stripeFor = (key: string, at = http) =>
  new Stripe(key, { host: '127.0.0.1', port: at.port, protocol: 'http', maxNetworkRetries: 0 });
const refundPosts = () => stripe.received.filter((r) => r.method === 'POST' && r.path === '/v1/refunds');
const money = (r: { outcome: string; cost_micros: number; reserved_micros: number }) => [
  r.outcome,
  r.cost_micros,
  r.reserved_micros,
];

/** A refund by raw HTTP (no SDK retries), with an Idempotency-Key. */
function postRefund(key: string, idem: string, body: Record<string, string>, at = http) {
  return fetch(`${at.url}/v1/refunds`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/x-www-form-urlencoded',
      'idempotency-key': idem,
    },
    body: new URLSearchParams(body).toString(),
  });
}

describe('a replay through the REST door', () => {
  it('three identical stripe-node refunds with one idempotencyKey make one refund, count $12 once and leave two $0 replays linked to the first', async () => {
    const p = stripe.addPayment({ customer: 'cus_A', amount: 10_000 });
    const key = await keyFor(tdb.db, { policy: 'replays' });
    const sdk = stripeFor(key.key);
    const refunds: Stripe.Response<Stripe.Refund>[] = [];
    for (let i = 0; i < 3; i++)
      refunds.push(
        await sdk.refunds.create(
          { payment_intent: p.payment_intent, amount: 1200 },
          { idempotencyKey: 'order-42' },
        ),
      );
    expect(new Set(refunds.map((r) => r.id)).size).toBe(1);
    expect(refunds.map((r) => r.lastResponse.headers['idempotent-replayed'])).toEqual([
      undefined,
      'true',
      'true',
    ]);
    expect(refundPosts()).toHaveLength(3);
    expect(p.amount_refunded).toBe(1200);

    await settled();
    const rows = await auditRows(tdb.pool, key.id);
    expect(rows.map(money)).toEqual([
      ['succeeded', 12_000_000, 0],
      ['succeeded', 0, 0],
      ['succeeded', 0, 0],
    ]);
    const first = rows[0]!;
    expect(first.metadata.replay_of).toBeUndefined();
    expect(rows.slice(1).map((r) => r.metadata.replay_of)).toEqual([first.id, first.id]);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 12_000_000, reserved: 0 });

    // leash spend, get_budget (the MCP door) and the cap all count the $12 once.
    const report = await spendReport(tdb.db, { by: 'key' });
    expect(report.rows.find((r) => r.group === key.id)).toMatchObject({
      cost_micros: 12_000_000,
      reserved_micros: 0,
      remaining_micros: 36_000_000,
    });
    const budget = await runTool(deps, key.key, 'get_budget', {});
    expect(budget.ok, JSON.stringify(budget)).toBe(true);
    if (!budget.ok) return;
    const scopes = budget.output.scopes as { scope: string; unit: string; used: number; remaining: number }[];
    expect(scopes.find((s) => s.scope === 'key' && s.unit === 'usd_micros')).toMatchObject({
      used: 12_000_000,
      remaining: 36_000_000,
    });
    const rest = await sdk.refunds.create(
      { payment_intent: p.payment_intent, amount: 3600 },
      { idempotencyKey: 'order-43' },
    );
    expect(rest.amount).toBe(3600);

    // Shown as replays in audit query (table and JSON), the tail's line and the console's rows.
    const [r2] = (await queryAudit(tdb.db, { keyId: key.id, order: 'asc' })).slice(1);
    expect(r2?.replay_of).toBe(first.id);
    expect(formatAuditLine(r2!)).toContain(`replay of ${first.id}`);
    const env = { DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent/leash-replays-home', ...ENV };
    const table = await cli(['audit', 'query', '--key', key.id, '--wide'], env);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toContain('REPLAY_OF');
    expect(table.stdout.split(first.id).length - 1).toBe(3); // its own row, and two replays naming it
    const json = await cli(['audit', 'query', '--key', key.id, '--json'], env);
    const listed = JSON.parse(json.stdout) as { id: string; replay_of: string | null }[];
    expect(listed.filter((r) => r.replay_of === first.id)).toHaveLength(2);
  });

  it('reports replays to the live tail and the console stream as they settle, and the console shows them as replays', async () => {
    const p = stripe.addPayment({ customer: 'cus_A', amount: 10_000 });
    const key = await keyFor(tdb.db, { policy: 'replays' });
    const events: AuditEvent[] = [];
    const watch = watchAudit(tdb.db, { keyId: key.id }, (e) => events.push(e), { intervalMs: 50 });
    try {
      await watch.ready;
      const sdk = stripeFor(key.key);
      for (let i = 0; i < 2; i++)
        await sdk.refunds.create(
          { payment_intent: p.payment_intent, amount: 500 },
          { idempotencyKey: 'order-51' },
        );
      await settled();
      const replays = () => events.filter((e) => e.row.replay_of).map((e) => e.row);
      await expect.poll(() => replays().length, { timeout: 30_000 }).toBeGreaterThan(0);
      const first = events.find((e) => e.kind === 'row')!.row;
      expect(replays().at(-1)).toMatchObject({ replay_of: first.id, cost_micros: 0, reserved_micros: 0 });
      expect(formatAuditLine(replays().at(-1)!, 'settled')).toMatch(/ replay {3}.* replay of /);
    } finally {
      await watch.stop();
    }
    // The console renders a replay's outcome as a "replay" badge and lists "Replay of" in its details.
    const consoleSource = (file: string) =>
      readFileSync(new URL(`../console/${file}`, import.meta.url), 'utf8');
    expect(consoleSource('views/live-table.ts')).toContain('r.replay_of');
    expect(consoleSource('views/details.ts')).toContain("['replay_of', 'Replay of']");
  });

  it('settles a duplicate sent while the first is still in flight as Stripe answers it (409 idempotency_key_in_use, nothing spent), then its retry as a replay', async () => {
    const p = stripe.addPayment({ customer: 'cus_A', amount: 10_000 });
    const key = await keyFor(tdb.db, { policy: 'replays' });
    const body = { payment_intent: p.payment_intent, amount: '1200' };
    stripe.delayMs = 400;
    const answers = await Promise.all([
      postRefund(key.key, 'order-77', body),
      postRefund(key.key, 'order-77', body),
    ]);
    stripe.delayMs = 0;
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses).toEqual([200, 409]);
    const conflict = answers.find((a) => a.status === 409)!;
    expect(await conflict.json()).toMatchObject({ error: { code: 'idempotency_key_in_use' } });
    expect(p.amount_refunded).toBe(1200);

    const retry = await postRefund(key.key, 'order-77', body);
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    await settled();
    const rows = await auditRows(tdb.pool, key.id);
    const counted = rows.filter((r) => r.cost_micros > 0);
    expect(counted).toHaveLength(1);
    expect(rows.find((r) => r.http_status === 409)).toMatchObject({ outcome: 'failed', cost_micros: 0 });
    expect(rows.at(-1)?.metadata.replay_of).toBe(counted[0]!.id);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 12_000_000, reserved: 0 });
  });

  it('links a replay to a first call that timed out (its $12 held once, not twice), and reconcile then counts the first', async () => {
    const p = stripe.addPayment({ customer: 'cus_A', amount: 10_000 });
    const key = await keyFor(tdb.db, { policy: 'replays' });
    const body = { payment_intent: p.payment_intent, amount: '1200' };
    stripe.delayMs = 800;
    const first = await postRefund(key.key, 'order-88', body, slowHttp);
    expect(first.status).toBe(504);
    await expect.poll(() => p.amount_refunded, { timeout: 30_000 }).toBe(1200);
    stripe.delayMs = 0;
    const again = await postRefund(key.key, 'order-88', body, slowHttp);
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    await settled();
    let rows = await auditRows(tdb.pool, key.id);
    expect(rows.map(money)).toEqual([
      ['unknown', 0, 12_000_000],
      ['succeeded', 0, 0],
    ]);
    expect(rows[1]!.metadata.replay_of).toBe(rows[0]!.id);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 0, reserved: 12_000_000 });

    const s = await reconcile(slow, { graceSeconds: 0 });
    expect(s.rows.find((r) => r.id === rows[0]!.id)?.after).toBe('succeeded');
    rows = await auditRows(tdb.pool, key.id);
    expect(rows.map(money)).toEqual([
      ['succeeded', 12_000_000, 0],
      ['succeeded', 0, 0],
    ]);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 12_000_000, reserved: 0 });
    expect(p.amount_refunded).toBe(1200);
  });

  it('three identical resend-node sends with one idempotencyKey send one email, count it once and leave two $0 replays linked to the first', async () => {
    const key = await keyFor(tdb.db, { policy: 'replays' });
    const client = new Resend(key.key, { baseUrl: http.url });
    const before = resend.sent.length;
    const ids: (string | undefined)[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await client.emails.send(
        { from: FROM, to: ['pat@acme.com'], subject: 'Your order', text: 'shipped' },
        { idempotencyKey: 'welcome/42' },
      );
      expect(r.error).toBeNull();
      ids.push(r.data?.id);
    }
    expect(new Set(ids).size).toBe(1);
    expect(resend.sent.length - before).toBe(1);
    await settled();
    const rows = await auditRows(tdb.pool, key.id);
    expect(rows).toHaveLength(3);
    const price = rows[0]!.cost_micros;
    expect(price).toBeGreaterThan(0);
    expect(rows.map(money)).toEqual([
      ['succeeded', price, 0],
      ['succeeded', 0, 0],
      ['succeeded', 0, 0],
    ]);
    expect(rows.slice(1).map((r) => r.metadata.replay_of)).toEqual([rows[0]!.id, rows[0]!.id]);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: price, reserved: 0 });
  });
});

describe('a replay through the MCP door', () => {
  it('counts a timed-out issue_refund once when reconcile replays it (its own replayed answer is not a second call)', async () => {
    const p = stripe.addPayment({ customer: 'cus_A', amount: 10_000 });
    const key = await keyFor(tdb.db, { policy: 'replays' });
    stripe.delayMs = 800;
    const r = await runTool(slow, key.key, 'issue_refund', {
      payment_intent: p.payment_intent,
      amount: 1500,
    });
    expect(r.ok).toBe(false);
    await expect.poll(() => p.amount_refunded, { timeout: 30_000 }).toBe(1500);
    stripe.delayMs = 0;
    await settled();
    await reconcile(slow, { graceSeconds: 0 });
    const rows = await auditRows(tdb.pool, key.id);
    expect(rows.map(money)).toEqual([['succeeded', 15_000_000, 0]]);
    expect(rows[0]!.metadata.replay_of).toBeUndefined();
    const budget = await runTool(deps, key.key, 'get_budget', {});
    if (!budget.ok) throw new Error(JSON.stringify(budget));
    const scopes = budget.output.scopes as { scope: string; unit: string; used: number }[];
    expect(scopes.find((s) => s.scope === 'key' && s.unit === 'usd_micros')?.used).toBe(15_000_000);
  });
});

describe('leash reconcile and rows already counted twice', () => {
  /** Admits `n` identical REST refunds of $12 with one idempotency key, as admission writes them (not yet settled). */
  async function admitted(key: { key: string; id: string }, n: number): Promise<string[]> {
    const auth = await deps.keys.identify(key.key, true);
    if (!auth.ok) throw new Error('key not found');
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = uuidv7();
      const draft: AuditDraft = {
        id,
        key_id: key.id,
        agent: auth.key.agent,
        run_id: auth.key.run_id,
        policy: auth.key.policy.name,
        policy_version: auth.key.policy.version,
        tool: 'stripe:POST /v1/refunds',
        vendor: 'stripe',
        operation: 'POST /v1/refunds',
        account: null,
        request: { params: {}, query: {}, body: { payment_intent: 'pi_crafted', amount: '1200' } },
        args_hash: 'crafted',
        sandbox: false,
        door: 'http',
        amount: 1200,
        currency: 'usd',
        metadata: { idempotency_key: `leash_${key.id}_order-9`, agent_idempotency_key: 'order-9' },
      };
      const windows = windowsFor(auth.key.policy, key.id, deps.clock.now(), true);
      const r = await admit(
        tdb.db,
        {
          keyId: key.id,
          secretHash: auth.key.secret_hash,
          policyVersion: auth.key.policy.version,
          cost: 12_000_000,
          windows,
          loop: null,
        },
        draft,
        deps.auditHash,
      );
      expect(r).toMatchObject({ admitted: true });
      ids.push(id);
    }
    return ids;
  }

  /** Settles each row as the settle before replays did (migration 0011's leash_settle_batch): each one credited. */
  async function settledTheOldWay(ids: string[], object: string) {
    for (const id of ids) {
      const item = {
        id,
        outcome: 'succeeded',
        cost: 12_000_000,
        cost_status: 'settled',
        patch: { vendor_object_id: object, amount: 1200, currency: 'usd', http_status: 200 },
      };
      await sql`select leash_settle_batch(${JSON.stringify([item])}::jsonb)`.execute(tdb.db);
    }
  }

  it('finds several succeeded rows of one key holding one vendor object and turns the later ones into $0 replays of the first, once', async () => {
    const key = await keyFor(tdb.db, { policy: 'replays' });
    const ids = await admitted(key, 3);
    await settledTheOldWay(ids, `re_crafted_${randomBytes(6).toString('hex')}`);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 36_000_000, reserved: 0 });

    const s = await reconcile(deps, { graceSeconds: 30, replaysSince: new Date(Date.now() - 86_400_000) });
    expect(s.replays).toBe(2);
    const rows = await auditRows(tdb.pool, key.id);
    expect(rows.map(money)).toEqual([
      ['succeeded', 12_000_000, 0],
      ['succeeded', 0, 0],
      ['succeeded', 0, 0],
    ]);
    expect(rows.slice(1).map((r) => r.metadata.replay_of)).toEqual([ids[0], ids[0]]);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 12_000_000, reserved: 0 });
    const report = await spendReport(tdb.db, { by: 'key' });
    expect(report.rows.find((r) => r.group === key.id)).toMatchObject({ cost_micros: 12_000_000 });

    const again = await reconcile(deps, {
      graceSeconds: 30,
      replaysSince: new Date(Date.now() - 86_400_000),
    });
    expect(again.replays).toBe(0);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 12_000_000, reserved: 0 });
  });

  it('corrects the spend exactly once when two reconciles run at the same time, and leash reconcile does it from the command line', async () => {
    const key = await keyFor(tdb.db, { policy: 'replays' });
    const ids = await admitted(key, 4);
    await settledTheOldWay(ids, `re_crafted_${randomBytes(6).toString('hex')}`);
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 48_000_000, reserved: 0 });
    const since = new Date(Date.now() - 86_400_000);
    const other = await tdb.openPool(2);
    try {
      const twin = { ...deps, db: other.db };
      const [a, b] = await Promise.all([
        reconcile(deps, { replaysSince: since }),
        reconcile(twin, { replaysSince: since }),
      ]);
      expect(a.replays + b.replays).toBe(3);
    } finally {
      await other.close();
    }
    expect(await keySpend(tdb.pool, key.id)).toEqual({ spent: 12_000_000, reserved: 0 });

    const more = await keyFor(tdb.db, { policy: 'replays' });
    const twice = await admitted(more, 2);
    await settledTheOldWay(twice, `re_crafted_${randomBytes(6).toString('hex')}`);
    const env = { DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent/leash-replays-home', ...ENV };
    const out = await cli(['reconcile', '--json'], env);
    expect(out.code, out.stderr).toBe(0);
    expect((JSON.parse(out.stdout) as { replays: number }).replays).toBe(1);
    expect(await keySpend(tdb.pool, more.id)).toEqual({ spent: 12_000_000, reserved: 0 });
  });
});
