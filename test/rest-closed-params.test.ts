// Covers what the REST front door forwards: only the parameters policy checked and each endpoint's written list from
// the vendor's reference; another form of a checked field (`amount[]`, `To[]`, `to[0]`) or an unlisted parameter is
// refused 400 invalid_input naming it, with an audit row and nothing sent to the vendor.
import { Resend } from 'resend';
import Stripe from 'stripe';
import twilio from 'twilio';
import type { RequestOptions } from 'twilio/lib/base/RequestClient.js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/config/logger.js';
import { createPipeline } from '../src/pipeline/run-tool.js';
import { createAuthThrottle } from '../src/server/auth-throttle.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { restRoutes } from '../src/server/rest.js';
import { catalog, vendorApis } from '../tools/index.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';
import { auditRows, caught } from './support/rest.js';
import { startVendors, type Vendors } from './support/vendors.js';

let tdb: TestDatabase;
let vendors: Vendors;
let http: RunningHttp;

const MESSAGES = '/2010-04-01/Accounts/{AccountSid}/Messages.json';
const FROM_EMAIL = 'Support <support@acme.com>';

beforeAll(async () => {
  tdb = await freshDatabase(6);
  vendors = await startVendors();
  const deps = createPipeline({
    db: tdb.db,
    config: testConfig(vendors.env),
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
    name: 'closed',
    limits: { per_key_daily_usd: 100 },
    tools: {},
    vendors: {
      stripe: {
        http: {
          'POST /v1/refunds': { max_amount_usd: 50, customers: ['cus_alice'] },
          'POST /v1/payment_intents': { max_amount_usd: 50, customers: ['cus_alice'] },
          'GET /v1/payment_intents/{id}': {},
        },
      },
      twilio: {
        http: {
          [`POST ${MESSAGES}`]: { from: '+15550001111', to_prefixes: ['+1'] },
          'GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json': {},
        },
      },
      resend: {
        http: { 'POST /emails': { from: FROM_EMAIL, to_domains: ['acme.com'] }, 'GET /emails/{id}': {} },
      },
    },
  });
}, 180_000);

afterAll(async () => {
  await http?.close();
  await vendors?.close();
  await tdb?.close();
});

beforeEach(() => vendors.reset());

const AGENT_SID = `AC${'0'.repeat(32)}`;
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const basic = (key: string) => ({
  authorization: `Basic ${Buffer.from(`${AGENT_SID}:${key}`).toString('base64')}`,
});
const formPost = (path: string, auth: Record<string, string>, pairs: [string, string][]) =>
  fetch(`${http.url}${path}`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(pairs).toString(),
  });
const jsonPost = (path: string, auth: Record<string, string>, body: unknown) =>
  fetch(`${http.url}${path}`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

/** A 400 invalid_input naming `field` (and saying why), one denied row, and nothing at any vendor. */
async function expectRefused(res: Response, keyId: string, field: string, why: RegExp) {
  const text = await res.text();
  expect(res.status, text).toBe(400);
  expect(text).toContain('invalid_input');
  expect(text).toContain(field);
  expect(text).toMatch(why);
  expect(vendors.requests()).toBe(0);
  const rows = await auditRows(tdb.pool, keyId);
  expect(rows.map((r) => [r.decision, r.reason])).toEqual([['denied', 'invalid_input']]);
  expect(res.headers.get('leash-audit-id')).toBe(rows[0]!.id);
}

const ANOTHER_FORM = /another form of/;
const NOT_FORWARDED = /not a parameter leash forwards/;

describe('stripe', () => {
  const stripeFor = (key: string) =>
    new Stripe(key, { host: '127.0.0.1', port: http.port, protocol: 'http', maxNetworkRetries: 0 });

  it.each([
    ['amount[]', [['amount[]', '120']]],
    [
      'amount[x]',
      [
        ['amount', '100'],
        ['amount[x]', '120'],
      ],
    ],
    ['Amount', [['Amount', '120']]],
    ['payment_intent[0]', [['payment_intent[0]', 'pi_other']]],
  ] as [string, [string, string][]][])(
    'refuses %s next to the checked refund fields: 400 invalid_input naming it, a row, nothing sent',
    async (field, extra) => {
      const p = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 5000 });
      const key = await keyFor(tdb.db, { policy: 'closed' });
      const res = await formPost('/v1/refunds', bearer(key.key), [
        ['payment_intent', p.payment_intent],
        ...extra,
      ]);
      await expectRefused(res, key.id, field, ANOTHER_FORM);
      expect(p.amount_refunded).toBe(0);
    },
  );

  it('forwards a refund’s listed parameters (reason, metadata[…], expand[]) unchanged and refuses an unlisted one (customer) naming it', async () => {
    const p = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 5000 });
    const key = await keyFor(tdb.db, { policy: 'closed' });
    const stripe = stripeFor(key.key);
    const refund = await stripe.refunds.create({
      payment_intent: p.payment_intent,
      amount: 100,
      reason: 'requested_by_customer',
      metadata: { order: '42' },
      expand: ['charge'],
    });
    expect(refund.amount).toBe(100);
    const post = vendors.stripe.received.find((r) => r.method === 'POST');
    expect(Object.fromEntries(post!.form)).toEqual({
      payment_intent: p.payment_intent,
      amount: '100',
      reason: 'requested_by_customer',
      'metadata[order]': '42',
      'expand[0]': 'charge',
    });
    vendors.reset();
    const e = await caught(
      stripe.refunds.create({ payment_intent: p.payment_intent, amount: 100, customer: 'cus_bob' }),
    );
    expect(e).toMatchObject({ type: 'StripeInvalidRequestError', statusCode: 400, code: 'invalid_input' });
    expect(String(e.message)).toMatch(/body\.customer: not a parameter leash forwards on POST \/v1\/refunds/);
    expect(vendors.requests()).toBe(0);
  });

  it('refuses a PaymentIntent parameter that moves money elsewhere (transfer_data[destination]) and forwards listed ones', async () => {
    const key = await keyFor(tdb.db, { policy: 'closed' });
    const stripe = stripeFor(key.key);
    const intent = { amount: 1000, currency: 'usd', customer: 'cus_alice', description: 'order 7' };
    const e = await caught(
      stripe.paymentIntents.create({ ...intent, transfer_data: { destination: 'acct_x' } }),
    );
    expect(e).toMatchObject({ statusCode: 400, code: 'invalid_input' });
    expect(String(e.message)).toContain('transfer_data[destination]');
    expect(vendors.requests()).toBe(0);
    await stripe.paymentIntents.create({ ...intent, metadata: { order: '7' } });
    const [got] = vendors.stripe.received;
    expect(Object.fromEntries(got!.form)).toEqual({
      amount: '1000',
      currency: 'usd',
      customer: 'cus_alice',
      description: 'order 7',
      'metadata[order]': '7',
    });
  });

  it('forwards a read’s expand[] and refuses any other query parameter naming it', async () => {
    const p = vendors.stripe.addPayment({ customer: 'cus_alice', amount: 700 });
    const key = await keyFor(tdb.db, { policy: 'closed' });
    const read = await stripeFor(key.key).paymentIntents.retrieve(p.payment_intent, { expand: ['customer'] });
    expect(read.id).toBe(p.payment_intent);
    const [got] = vendors.stripe.received;
    expect(got?.method).toBe('GET');
    expect(Object.fromEntries(got!.form)).toEqual({ 'expand[0]': 'customer' });
    vendors.reset();
    const other = await keyFor(tdb.db, { policy: 'closed' });
    const res = await fetch(`${http.url}/v1/payment_intents/${p.payment_intent}?limit=1`, {
      headers: bearer(other.key),
    });
    await expectRefused(res, other.id, 'query.limit', NOT_FORWARDED);
  });
});

describe('twilio', () => {
  class LeashRequestClient extends twilio.RequestClient {
    override request<T>(opts: RequestOptions<T>) {
      return super.request<T>({ ...opts, uri: opts.uri.replace('https://api.twilio.com', http.url) });
    }
  }
  const twilioFor = (key: string) => twilio(AGENT_SID, key, { httpClient: new LeashRequestClient() });
  const messages = `/2010-04-01/Accounts/${AGENT_SID}/Messages.json`;

  it.each([
    ['To[]', [['To[]', '+447700900123']]],
    ['to', [['to', '+447700900123']]],
    ['MediaUrl[0]', [['MediaUrl[0]', 'https://example.com/cat.gif']]],
  ] as [string, [string, string][]][])(
    'refuses %s next to the checked message fields: 400 invalid_input naming it, a row, nothing sent',
    async (field, extra) => {
      const key = await keyFor(tdb.db, { policy: 'closed' });
      const res = await formPost(messages, basic(key.key), [
        ['To', '+15551230000'],
        ['Body', 'hello'],
        ...extra,
      ]);
      await expectRefused(res, key.id, field, ANOTHER_FORM);
    },
  );

  it('forwards listed message parameters (StatusCallback, ValidityPeriod) unchanged and refuses FallbackFrom naming it', async () => {
    const key = await keyFor(tdb.db, { policy: 'closed' });
    const client = twilioFor(key.key);
    await client.messages.create({
      to: '+15551230000',
      body: 'hello',
      statusCallback: 'https://example.com/status',
      validityPeriod: 600,
    });
    expect(vendors.twilio.received.at(-1)?.form).toEqual({
      To: '+15551230000',
      Body: 'hello',
      StatusCallback: 'https://example.com/status',
      ValidityPeriod: '600',
      From: '+15550001111',
    });
    vendors.reset();
    const e = await caught(
      client.messages.create({ to: '+15551230000', body: 'hello', fallbackFrom: '+15559999999' }),
    );
    expect(e).toMatchObject({ status: 400 });
    expect(String(e.message)).toMatch(/body\.FallbackFrom: not a parameter leash forwards/);
    expect(vendors.requests()).toBe(0);
  });

  it('refuses a query parameter on a message read naming it', async () => {
    const key = await keyFor(tdb.db, { policy: 'closed' });
    const res = await fetch(
      `${http.url}/2010-04-01/Accounts/${AGENT_SID}/Messages/SM${'1'.repeat(32)}.json?PageSize=5`,
      { headers: basic(key.key) },
    );
    await expectRefused(res, key.id, 'query.PageSize', NOT_FORWARDED);
  });
});

describe('resend', () => {
  const email = { from: FROM_EMAIL, to: 'pat@acme.com', subject: 'Hi', text: 'hello' };

  it.each([
    ['to[0]', { 'to[0]': 'victim@evil.example' }],
    ['Bcc', { Bcc: 'leak@evil.example' }],
  ])(
    'refuses %s next to the checked email fields: 400 invalid_input naming it, a row, nothing sent',
    async (field, extra) => {
      const key = await keyFor(tdb.db, { policy: 'closed' });
      const res = await jsonPost('/emails', bearer(key.key), { ...email, ...extra });
      await expectRefused(res, key.id, field, ANOTHER_FORM);
    },
  );

  it('forwards listed email fields (html, topic_id) unchanged and refuses an unlisted one (template) naming it', async () => {
    const key = await keyFor(tdb.db, { policy: 'closed' });
    const resend = new Resend(key.key, { baseUrl: http.url });
    const r = await resend.emails.send({ ...email, html: '<p>hello</p>', topicId: 'topic_1' });
    expect(r.error).toBeNull();
    expect(vendors.resend.received.at(-1)?.body).toMatchObject({
      to: 'pat@acme.com',
      text: 'hello',
      html: '<p>hello</p>',
      topic_id: 'topic_1',
    });
    vendors.reset();
    const other = await keyFor(tdb.db, { policy: 'closed' });
    const res = await jsonPost('/emails', bearer(other.key), { ...email, template: { id: 'tmpl_1' } });
    await expectRefused(res, other.id, 'body.template', NOT_FORWARDED);
  });

  it('refuses an attachment field outside Resend’s list naming it', async () => {
    const key = await keyFor(tdb.db, { policy: 'closed' });
    const res = await jsonPost('/emails', bearer(key.key), {
      ...email,
      attachments: [{ filename: 'a.txt', content: 'aGk=', disposition: 'inline' }],
    });
    await expectRefused(res, key.id, 'disposition', /not an attachment field leash forwards/);
  });

  it('refuses a query parameter on an email read naming it', async () => {
    const key = await keyFor(tdb.db, { policy: 'closed' });
    const res = await fetch(`${http.url}/emails/em_1?include=raw`, { headers: bearer(key.key) });
    await expectRefused(res, key.id, 'query.include', NOT_FORWARDED);
  });
});
