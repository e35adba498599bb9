// Covers the REST front door: the real stripe-node, twilio-node and resend-node SDKs pointed at two spawned
// `leash serve` replicas (vault key as API key) in front of the vendor fakes — limits, default deny, shared caps,
// revoke, vendor-shaped refusals and no canary credential anywhere.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Resend } from 'resend';
import Stripe from 'stripe';
import twilio from 'twilio';
import type { RequestOptions } from 'twilio/lib/base/RequestClient.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { validatePolicy } from '../src/policy/compile.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { catalog } from '../tools/index.js';
import { childEnv, runLeash } from './support/cli.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor } from './support/governance.js';
import { auditRows as rowsOf, caught as catchSdk, startServe, type Served } from './support/rest.js';
import { CANARIES, containsCanary, startVendors, type Vendors } from './support/vendors.js';

let tdb: TestDatabase;
let vendors: Vendors;
const replicas: Served[] = [];
/** Every answer any SDK got (bodies and headers), for the canary check. */
const seen: string[] = [];

const POLICY = {
  name: 'proxy',
  limits: { per_key_daily_usd: 100 },
  tools: { issue_refund: { max_amount_usd: 50, customers: ['cus_alice', 'cus_bob'] } },
  vendors: {
    stripe: {
      http: {
        'POST /v1/refunds': { max_amount_usd: 50, customers: ['cus_alice', 'cus_bob'] },
        'GET /v1/payment_intents/{id}': { customers: ['cus_alice', 'cus_bob'] },
        'POST /v1/payment_intents': { max_amount_usd: 50, capture_method: 'manual' },
      },
    },
    twilio: {
      http: {
        'POST /2010-04-01/Accounts/{AccountSid}/Messages.json': {
          from: '+15550001111',
          to_prefixes: ['+1'],
          max_segments: 2,
        },
      },
    },
    resend: {
      http: { 'POST /emails': { from: 'Support <support@acme.com>', to_domains: ['acme.com'] } },
    },
  },
};

beforeAll(async () => {
  tdb = await freshDatabase(8);
  vendors = await startVendors();
  await applyTestPolicy(tdb.db, catalog, POLICY);
  await applyTestPolicy(tdb.db, catalog, {
    name: 'tight',
    limits: { per_key_daily_usd: 10 },
    tools: { issue_refund: {} },
    vendors: { stripe: { http: { 'POST /v1/refunds': {} } } },
  });
  replicas.push(await startServe(tdb.url, vendors.env), await startServe(tdb.url, vendors.env));
}, 180_000);

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await vendors?.close();
  await tdb?.close();
});

beforeEach(() => vendors.reset());

const stripeFor = (key: string, replica = 0) =>
  new Stripe(key, {
    host: '127.0.0.1',
    port: replicas[replica]!.port,
    protocol: 'http',
    maxNetworkRetries: 0,
  });

const caught = (p: Promise<unknown>) => catchSdk(p, seen);
const auditRows = (keyId: string) => rowsOf(tdb.pool, keyId);

describe('stripe-node', () => {
  it('refunds within the limits and answers with Stripe’s own refund object, passing the agent’s Idempotency-Key on', async () => {
    const p = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 5000 });
    const key = await keyFor(tdb.db, { policy: 'proxy', agent: 'sdk-agent' });
    const stripe = stripeFor(key.key);
    const refund = await stripe.refunds.create(
      { payment_intent: p.payment_intent, amount: 1200 },
      { idempotencyKey: 'agent-chosen-key-1' },
    );
    seen.push(JSON.stringify(refund), JSON.stringify(refund.lastResponse.headers));
    expect(refund).toMatchObject({ object: 'refund', amount: 1200, payment_intent: p.payment_intent });
    expect(refund.id).toMatch(/^re_/);
    expect(refund.lastResponse.requestId).toMatch(/^req_/);
    const post = vendors.stripe.received.find((r) => r.method === 'POST');
    expect(post?.path).toBe('/v1/refunds');
    // Namespaced to the vault key, so keys sharing the credential never share Stripe's idempotency cache.
    expect(post?.headers['idempotency-key']).toBe(`leash_${key.id}_agent-chosen-key-1`);
    expect(post?.headers.authorization).toBe(`Bearer ${CANARIES.STRIPE_SECRET_KEY}`);
    const [row] = await auditRows(key.id);
    expect(row).toMatchObject({
      tool: 'stripe:POST /v1/refunds',
      door: 'http',
      operation: 'POST /v1/refunds',
      decision: 'allowed',
    });
    expect(row?.metadata).toMatchObject({
      idempotency_key: `leash_${key.id}_agent-chosen-key-1`,
      agent_idempotency_key: 'agent-chosen-key-1',
    });
  });

  it('gives two vault keys that send the same Idempotency-Key a refund each, never one replayed to the other', async () => {
    const p = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 5000 });
    const [a, b] = [await keyFor(tdb.db, { policy: 'proxy' }), await keyFor(tdb.db, { policy: 'proxy' })];
    const params = { payment_intent: p.payment_intent, amount: 300 };
    const first = await stripeFor(a.key).refunds.create(params, { idempotencyKey: 'shared-order-9' });
    const second = await stripeFor(b.key, 1).refunds.create(params, { idempotencyKey: 'shared-order-9' });
    expect(second.id).not.toBe(first.id);
    expect(p.amount_refunded).toBe(600);
    const posts = vendors.stripe.received.filter((r) => r.method === 'POST');
    expect(posts.map((r) => r.headers['idempotency-key'])).toEqual([
      `leash_${a.id}_shared-order-9`,
      `leash_${b.id}_shared-order-9`,
    ]);
    // The same key's own retry still dedupes at Stripe.
    const again = await stripeFor(a.key).refunds.create(params, { idempotencyKey: 'shared-order-9' });
    expect(again.id).toBe(first.id);
    expect(p.amount_refunded).toBe(600);
  });

  it('refuses a query string on a write (POST /v1/refunds?n=1) with 400 invalid_input in Stripe’s shape and a row', async () => {
    const p = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 5000 });
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const res = await fetch(`${replicas[0]!.url}/v1/refunds?n=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ payment_intent: p.payment_intent, amount: '100' }).toString(),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_input' });
    expect(body.error.message).toMatch(/query parameters are not allowed/);
    expect(vendors.requests()).toBe(0);
    expect((await auditRows(key.id)).map((r) => [r.decision, r.reason])).toEqual([
      ['denied', 'invalid_input'],
    ]);
  });

  it('audits what the door refuses itself — a bad Idempotency-Key, an unreadable body, an oversized body — one row each', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const base = replicas[0]!.url;
    const auth = { authorization: `Bearer ${key.key}` };
    const form = { ...auth, 'content-type': 'application/x-www-form-urlencoded' };
    const cases = [
      {
        init: { method: 'POST', headers: { ...form, 'idempotency-key': 'has a space' }, body: 'charge=ch_1' },
        path: '/v1/refunds',
        status: 400,
        problem: /Idempotency-Key/,
      },
      {
        init: {
          method: 'POST',
          headers: { ...auth, 'content-type': 'application/json' },
          body: '{"to": ',
        },
        path: '/emails',
        status: 400,
        problem: /not valid JSON/,
      },
      {
        init: { method: 'POST', headers: form, body: Buffer.alloc((1 << 20) + 10, 'a') },
        path: '/v1/refunds',
        status: 413,
        problem: /over \d+ bytes/,
      },
    ];
    for (const [i, c] of cases.entries()) {
      const res = await fetch(base + c.path, c.init);
      const text = await res.text();
      expect(res.status, text).toBe(c.status);
      expect(text).toMatch(c.problem);
      expect(text).toMatch(/invalid_input, audit id [0-9a-f-]{36}/);
      const rows = await auditRows(key.id);
      expect(rows).toHaveLength(i + 1);
      expect(rows[i]).toMatchObject({ decision: 'denied', reason: 'invalid_input', door: 'http' });
      expect(res.headers.get('leash-audit-id')).toBe(rows[i]!.id);
    }
    expect(vendors.requests()).toBe(0);
  });

  it('refuses stripe.transfers.create with 403 endpoint_not_allowed, sends Stripe nothing, and audits the denial', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const e = await caught(
      stripeFor(key.key).transfers.create({ amount: 100, currency: 'usd', destination: 'acct_1' }),
    );
    expect(e.type).toBe('StripePermissionError');
    expect(e.statusCode).toBe(403);
    expect(e.code).toBe('endpoint_not_allowed');
    expect(String(e.message)).toMatch(/audit id [0-9a-f-]{36}/);
    expect(vendors.requests()).toBe(0);
    const [row] = await auditRows(key.id);
    expect(row).toMatchObject({ door: 'http', decision: 'denied', reason: 'endpoint_not_allowed' });
  });

  it('refuses a refund over the per-call limit and one for a customer off the list with 403; no refund reaches Stripe', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const stripe = stripeFor(key.key);
    const big = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 20_000 });
    const over = await caught(stripe.refunds.create({ payment_intent: big.payment_intent, amount: 6000 }));
    expect(over).toMatchObject({ type: 'StripePermissionError', statusCode: 403, code: 'amount_over_limit' });
    const eve = vendors.stripe.addPayment({ customer: 'cus_eve', amount: 1000 });
    const stranger = await caught(stripe.refunds.create({ charge: eve.charge }));
    expect(stranger).toMatchObject({ statusCode: 403, code: 'customer_not_allowed' });
    // Only the read-only payment lookups policy needs reached the fake.
    expect(vendors.stripe.received.filter((r) => r.method !== 'GET')).toHaveLength(0);
  });

  it('requires capture_method=manual for payment intents when the policy says so, before Stripe hears of it', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const e = await caught(stripeFor(key.key).paymentIntents.create({ amount: 1000, currency: 'usd' }));
    expect(e).toMatchObject({ statusCode: 403, code: 'parameter_not_allowed' });
    expect(vendors.requests()).toBe(0);
  });

  it('takes the key as curl -u sends it, answers a read, and refuses a DELETE in Stripe’s error shape', async () => {
    const p = vendors.stripe.addPayment({ customer: 'cus_bob', amount: 700 });
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const auth = { authorization: `Basic ${Buffer.from(`${key.key}:`).toString('base64')}` };
    const base = replicas[1]!.url;
    const read = await fetch(`${base}/v1/payment_intents/${p.payment_intent}`, { headers: auth });
    const text = await read.text();
    seen.push(text, JSON.stringify([...read.headers]));
    expect(read.status).toBe(200);
    expect(JSON.parse(text)).toMatchObject({ id: p.payment_intent, customer: 'cus_bob' });
    expect(read.headers.get('request-id')).toMatch(/^req_/);
    expect(read.headers.get('leash-audit-id')).toBeTruthy();
    vendors.reset();
    const del = await fetch(`${base}/v1/customers/cus_bob`, { method: 'DELETE', headers: auth });
    expect(del.status).toBe(403);
    expect(await del.json()).toMatchObject({
      error: { type: 'invalid_request_error', code: 'endpoint_not_allowed' },
    });
    expect(vendors.requests()).toBe(0);
  });

  it('answers an unknown vault key with 401 as StripeAuthenticationError', async () => {
    const e = await caught(
      stripeFor('lsk_aaaaaaaaaaaa_' + 'a'.repeat(52)).refunds.create({ charge: 'ch_x' }),
    );
    expect(e).toMatchObject({ type: 'StripeAuthenticationError', statusCode: 401, code: 'key_invalid' });
    expect(vendors.requests()).toBe(0);
  });
});

describe('twilio-node with a custom httpClient', () => {
  // twilio-node has no base-URL option: this RequestClient rewrites api.twilio.com to leash.
  class LeashRequestClient extends twilio.RequestClient {
    constructor(private readonly base: string) {
      super();
    }
    override request<T>(opts: RequestOptions<T>) {
      return super.request<T>({ ...opts, uri: opts.uri.replace('https://api.twilio.com', this.base) });
    }
  }
  const agentSid = `AC${'0'.repeat(32)}`;
  const twilioFor = (key: string) =>
    twilio(agentSid, key, { httpClient: new LeashRequestClient(replicas[1]!.url) });

  it('sends an allowed message from the pinned number and answers with Twilio’s message, in the agent’s account', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const m = await twilioFor(key.key).messages.create({ to: '+15551230000', body: 'hello there' });
    seen.push(JSON.stringify(m));
    expect(m.sid).toMatch(/^SM/);
    expect(m.accountSid).toBe(agentSid);
    const got = vendors.twilio.received.at(-1);
    expect(got?.path).toBe(`/2010-04-01/Accounts/${CANARIES.TWILIO_ACCOUNT_SID}/Messages.json`);
    expect(got?.form).toMatchObject({ To: '+15551230000', From: '+15550001111', Body: 'hello there' });
  });

  it('refuses a recipient outside to_prefixes with 403 and sends Twilio nothing', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const e = await caught(twilioFor(key.key).messages.create({ to: '+447700900123', body: 'hi' }));
    expect(e).toMatchObject({ status: 403, code: 20403 });
    expect(String(e.message)).toMatch(/recipient_not_allowed/);
    expect(vendors.requests()).toBe(0);
  });
});

describe('resend-node', () => {
  const resendFor = (key: string) => new Resend(key, { baseUrl: replicas[0]!.url });

  it('sends an allowed email and answers with Resend’s id', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const r = await resendFor(key.key).emails.send({
      from: 'Support <support@acme.com>',
      to: ['pat@acme.com'],
      subject: 'Hi',
      text: 'hello',
    });
    seen.push(JSON.stringify(r));
    expect(r.error).toBeNull();
    expect(r.data?.id).toBeTruthy();
    expect(vendors.resend.received).toHaveLength(1);
  });

  it('refuses a recipient outside to_domains (even in bcc) with 403 and sends Resend nothing', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const r = await resendFor(key.key).emails.send({
      from: 'Support <support@acme.com>',
      to: ['pat@acme.com'],
      bcc: ['leak@evil.example'],
      subject: 'Hi',
      text: 'hello',
    });
    seen.push(JSON.stringify(r));
    expect(r.error).toMatchObject({ statusCode: 403 });
    expect(r.error?.message).toMatch(/recipient_not_allowed/);
    expect(vendors.requests()).toBe(0);
  });

  it('refuses a comma-joined recipient string (one address must be one entry) and sends Resend nothing', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const resend = resendFor(key.key);
    for (const field of ['to', 'cc', 'bcc', 'replyTo'] as const) {
      const r = await resend.emails.send({
        from: 'Support <support@acme.com>',
        to: 'pat@acme.com',
        [field]: 'victim@evil.example, ok@acme.com',
        subject: 'Hi',
        text: 'hello',
      });
      seen.push(JSON.stringify(r));
      expect(r.error, field).toMatchObject({ statusCode: 400 });
      expect(r.error?.message).toMatch(/invalid_input/);
      expect(r.error?.message).toMatch(/expected an email address/);
    }
    expect(vendors.requests()).toBe(0);
    const rows = await auditRows(key.id);
    expect(rows.map((r) => [r.decision, r.reason])).toEqual(Array(4).fill(['denied', 'invalid_input']));
  });

  it('refuses free-form headers, attachments by remote path and scheduled sending with 400 and a row each', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const resend = resendFor(key.key);
    const email = { from: 'Support <support@acme.com>', to: 'pat@acme.com', subject: 'Hi', text: 'hello' };
    const tries = [
      { headers: { Bcc: 'leak@evil.example' } },
      { attachments: [{ filename: 'x.pdf', path: 'https://evil.example/x.pdf' }] },
      { scheduledAt: 'in 1 hour' },
    ];
    for (const extra of tries) {
      const r = await resend.emails.send({ ...email, ...extra });
      seen.push(JSON.stringify(r));
      expect(r.error, JSON.stringify(extra)).toMatchObject({ statusCode: 400 });
      expect(r.error?.message).toMatch(/are not allowed|is not allowed/);
    }
    // Attachments with their content inline are still sent.
    const ok = await resend.emails.send({
      ...email,
      attachments: [{ filename: 'a.txt', content: Buffer.from('hi').toString('base64') }],
    });
    expect(ok.error).toBeNull();
    expect(vendors.resend.received).toHaveLength(1);
    const rows = await auditRows(key.id);
    expect(rows.map((r) => [r.decision, r.reason])).toEqual([
      ['denied', 'invalid_input'],
      ['denied', 'invalid_input'],
      ['denied', 'invalid_input'],
      ['allowed', null],
    ]);
  });

  it('refuses a query string on POST /emails with 400 invalid_input and a row', async () => {
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const res = await fetch(`${replicas[0]!.url}/emails?n=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        from: 'Support <support@acme.com>',
        to: 'pat@acme.com',
        subject: 'Hi',
        text: 'x',
      }),
    });
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/query parameters are not allowed[\s\S]*invalid_input/);
    expect(vendors.requests()).toBe(0);
    expect((await auditRows(key.id)).map((r) => [r.decision, r.reason])).toEqual([
      ['denied', 'invalid_input'],
    ]);
  });
});

describe('one budget, one engine', () => {
  it('admits exactly what fits of 200 concurrent proxied refunds across 2 replicas', async () => {
    const p = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 1_000_000 });
    const key = await keyFor(tdb.db, { policy: 'tight' });
    const clients = [stripeFor(key.key, 0), stripeFor(key.key, 1)];
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        caught(clients[i % 2]!.refunds.create({ payment_intent: p.payment_intent, amount: 50 })),
      ),
    );
    const ok = results.filter((r) => 'ok' in r).length;
    // $10 a day at $0.50 a refund: exactly 20.
    expect(ok).toBe(20);
    expect(results.filter((r) => r.statusCode === 402)).toHaveLength(180);
    expect(vendors.stripe.received.filter((r) => r.method === 'POST')).toHaveLength(20);
  }, 180_000);

  it('answers the very next SDK call after `leash keys revoke` with 401', async () => {
    const p = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 10_000 });
    const key = await keyFor(tdb.db, { policy: 'proxy' });
    const stripe = stripeFor(key.key);
    await stripe.refunds.create({ payment_intent: p.payment_intent, amount: 100 });
    const revoke = await runLeash(
      ['keys', 'revoke', key.id, '--json'],
      childEnv({ DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent' }),
    );
    expect(revoke.code, revoke.stderr).toBe(0);
    const e = await caught(stripe.refunds.create({ payment_intent: p.payment_intent, amount: 100 }));
    expect(e).toMatchObject({ type: 'StripeAuthenticationError', statusCode: 401, code: 'key_revoked' });
  });

  it('draws MCP tool calls and proxied calls of one key from one budget', async () => {
    await applyTestPolicy(tdb.db, catalog, { ...POLICY, name: 'shared', limits: { per_key_daily_usd: 1 } });
    const p = vendors.stripe.addPayment({ customer: 'cus_bob', amount: 10_000 });
    const key = await keyFor(tdb.db, { policy: 'shared' });
    const mcp = new Client({ name: 'agent', version: '1.0.0' });
    await mcp.connect(
      new StreamableHTTPClientTransport(new URL(`${replicas[0]!.url}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${key.key}` } },
      }),
    );
    const viaMcp = (await mcp.callTool({
      name: 'issue_refund',
      arguments: { payment_intent: p.payment_intent, amount: 60 },
    })) as CallToolResult;
    await mcp.close();
    expect(viaMcp.isError).toBeFalsy();
    const e = await caught(
      stripeFor(key.key, 1).refunds.create({ payment_intent: p.payment_intent, amount: 60 }),
    );
    expect(e).toMatchObject({ statusCode: 402, code: 'budget_exceeded' });
    const rows = await auditRows(key.id);
    expect(rows.map((r) => [r.door, r.decision])).toEqual([
      ['mcp', 'allowed'],
      ['http', 'denied'],
    ]);
  });
});

describe('policy', () => {
  it('rejects an endpoint leash does not govern, naming it', () => {
    expect(() =>
      validatePolicy(
        { name: 'x', tools: {}, vendors: { stripe: { http: { 'POST /v1/payouts': {} } } } },
        ruleSpecs(catalog),
      ),
    ).toThrow(/unknown stripe endpoint 'POST \/v1\/payouts'[\s\S]*vendors\.stripe\.http/);
  });
});

describe('credentials', () => {
  it('never shows a canary vendor credential in an answer, a log line or an audit row', async () => {
    // A refund through each replica of its own, so there is something to look at whichever tests ran before.
    const key = await keyFor(tdb.db, { policy: 'proxy', agent: 'canary-check' });
    for (const replica of [0, 1]) {
      const p = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 5000 });
      const refund = await stripeFor(key.key, replica).refunds.create({
        payment_intent: p.payment_intent,
        amount: 100,
      });
      seen.push(JSON.stringify(refund), JSON.stringify(refund.lastResponse.headers));
    }
    const { rows } = await tdb.pool.query<{ row: string }>(
      `select row_to_json(a)::text as row from audit_log a`,
    );
    expect(rows.length).toBeGreaterThan(0);
    for (const text of [...seen, ...rows.map((r) => r.row), ...replicas.map((r) => r.log())])
      expect(containsCanary(text)).toBeUndefined();
  });
});
