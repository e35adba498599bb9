// Covers send_sms through the real pipeline, the real Twilio SDK and a fake Twilio on port 0: sending, denials, price settlement, lost answers and secret scrubbing.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { reconcile } from '../src/pipeline/reconcile.js';
import type { PipelineDeps } from '../src/pipeline/run-tool.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { twilioVendor } from '../tools/twilio/client.js';
import { startTwilioFake, type TwilioFake } from '../tools/twilio/sandbox.js';
import { sendSms } from '../tools/twilio/send-sms.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import {
  applyTestPolicy,
  GIVE_UP_MS,
  keyFor,
  pipelineFor,
  testConfig,
  settledRun,
  readAuditRow,
} from './support/governance.js';

const ACCOUNT_SID = `AC${randomBytes(16).toString('hex')}`;
const AUTH_TOKEN = randomBytes(16).toString('hex'); // 32 hex digits, as Twilio's
const SERVICE_SID = `MG${'ab'.repeat(16)}`;
const catalog: Catalog = {
  tools: new Map([['send_sms', sendSms]]),
  vendors: new Map([['twilio', twilioVendor]]),
};

let tdb: TestDatabase;
let fake: TwilioFake;
let deps: PipelineDeps;
/** The same pipeline with a short vendor deadline, for messages whose fake never answers. */
let givesUp: PipelineDeps;
const logs: string[] = [];

beforeAll(async () => {
  tdb = await freshDatabase();
  fake = await startTwilioFake();
  const config = testConfig({
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: AUTH_TOKEN,
    LEASH_TWILIO_BASE_URL: fake.url,
  });
  deps = pipelineFor(tdb.db, catalog, config, logs);
  givesUp = pipelineFor(tdb.db, catalog, config, logs, GIVE_UP_MS);
  const sms = { from: '+15550001111', to_prefixes: ['+1'], max_segments: 3 };
  await applyTestPolicy(tdb.db, catalog, { name: 'sms', limits: { daily_usd: 5 }, tools: { send_sms: sms } });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'sms-settle',
    limits: { daily_usd: 5 },
    tools: { send_sms: sms },
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'sms-service',
    tools: { send_sms: { from: SERVICE_SID, to_numbers: ['+15550002222'] } },
  });
});

afterAll(async () => {
  await fake.close();
  await tdb.close();
});

beforeEach(() => {
  fake.received.length = 0;
  fake.delayMs = 0;
  fake.setPrice(null);
});

const auditRow = (id: string | null) => readAuditRow(tdb.db, id);

async function policySpent(policy: string) {
  const row = await tdb.db
    .selectFrom('spend_windows')
    .selectAll()
    .where('scope', '=', `policy:${policy}`)
    .where('kind', '=', 'usd_day')
    .executeTakeFirstOrThrow();
  return { spent: row.spent_micros, reserved: row.reserved_micros };
}

describe('send_sms', () => {
  it('sends from the policy sender with the canary account and leaves the cost pending at the estimate', async () => {
    const key = await keyFor(tdb.db, { policy: 'sms' });
    const r = await settledRun(deps, key.key, 'send_sms', {
      to: '+15557654321',
      body: 'Your order shipped.',
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(fake.received).toHaveLength(1);
    const sent = fake.received[0];
    expect(sent?.method).toBe('POST');
    expect(sent?.path).toBe(`/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`);
    expect(sent?.form).toEqual({ To: '+15557654321', From: '+15550001111', Body: 'Your order shipped.' });
    const basic = Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString('base64');
    expect(sent?.headers.authorization).toBe(`Basic ${basic}`);
    expect(r.output).toMatchObject({
      status: 'queued',
      to: '+15557654321',
      from: '+15550001111',
      segments: 1,
      estimated_cost_usd: '0.0083',
      cost_status: 'pending',
    });
    expect(r.output.sid).toMatch(/^SM[0-9a-f]{32}$/);
    const row = await auditRow(r.audit_id);
    expect(row).toMatchObject({
      vendor: 'twilio',
      operation: 'POST /2010-04-01/Accounts/{sid}/Messages.json',
      outcome: 'succeeded',
      cost_status: 'pending',
      cost_micros: 8300,
      reserved_micros: 0,
      vendor_object_id: r.output.sid,
      http_status: 201,
      request: { to: '+15557654321', body_length: 19, segments: 1 },
    });
    expect(row.vendor_request_id).toMatch(/^RQ/);
    expect(JSON.stringify(row)).not.toContain('shipped');
  });

  it('sends through a messaging service when the policy pins an MG sender', async () => {
    const key = await keyFor(tdb.db, { policy: 'sms-service' });
    const r = await settledRun(deps, key.key, 'send_sms', { to: '+15550002222', body: 'Hello' });
    expect(r).toMatchObject({ ok: true, output: { status: 'accepted', from: SERVICE_SID } });
    expect(fake.received[0]?.form).toEqual({
      To: '+15550002222',
      MessagingServiceSid: SERVICE_SID,
      Body: 'Hello',
    });
  });

  it.each([
    ['recipient_not_allowed', 'sms', { to: '+447700900123', body: 'Hi' }],
    ['too_many_segments', 'sms', { to: '+15557654321', body: 'ж'.repeat(300) }],
    ['too_many_segments', 'sms', { to: '+15557654321', body: 'a'.repeat(460) }],
    ['recipient_not_allowed', 'sms-service', { to: '+15550003333', body: 'Hi' }],
  ])('denies %s under policy %s, audits it and sends Twilio nothing', async (code, policy, args) => {
    const key = await keyFor(tdb.db, { policy });
    const r = await settledRun(deps, key.key, 'send_sms', args);
    expect(r).toMatchObject({ ok: false, failure: { code, retryable: false } });
    expect(fake.received).toHaveLength(0);
    if (r.ok) return;
    expect(await auditRow(r.failure.audit_id)).toMatchObject({
      decision: 'denied',
      reason: code,
      cost_micros: 0,
    });
  });

  it.each([
    ['a number without a plus', 'sms', { to: '5557654321', body: 'Hi' }, 'to'],
    [
      'a body over what Twilio takes in one message',
      'sms',
      { to: '+15557654321', body: 'a'.repeat(1601) },
      'body',
    ],
    [
      'a sender field the agent may not set',
      'sms',
      { to: '+15557654321', body: 'Hi', from: '+15559999999' },
      'from',
    ],
  ])('rejects %s as invalid_input and sends Twilio nothing', async (_name, policy, args, mentions) => {
    const key = await keyFor(tdb.db, { policy });
    const r = await settledRun(deps, key.key, 'send_sms', args);
    expect(r).toMatchObject({ ok: false, failure: { code: 'invalid_input' } });
    if (!r.ok) expect(r.failure.message).toContain(mentions);
    expect(fake.received).toHaveLength(0);
  });

  it('refuses to apply a policy whose SMS sender Twilio cannot use, naming the rule', async () => {
    await expect(
      applyTestPolicy(tdb.db, catalog, {
        name: 'sms-bad-sender',
        tools: { send_sms: { from: 'Support <support@acme.com>' } },
      }),
    ).rejects.toThrow(/send_sms 'from' must be an E\.164 number[\s\S]*tools\.send_sms/);
  });

  it('states the policy limits in the narrowed schema', () => {
    const narrowed = sendSms.narrow?.({
      source: {
        from: '+15550001111',
        to_prefixes: ['+1', '+44'],
        to_numbers: ['+33612345678'],
        max_segments: 3,
      },
    });
    expect(narrowed?.limits).toEqual([
      'Recipients must start with +1 or +44 or be one of +33612345678.',
      'At most 3 segments.',
      'Sent from +15550001111.',
    ]);
    expect(narrowed?.input.safeParse({ to: '+15557654321', body: 'a'.repeat(459) }).success).toBe(true);
    expect(narrowed?.input.safeParse({ to: '+15557654321', body: 'a'.repeat(460) }).success).toBe(false);
  });
});

describe('send_sms reconcile', () => {
  it('settles the cost at the price Twilio reports and moves the spend window with it', async () => {
    const key = await keyFor(tdb.db, { policy: 'sms-settle' });
    const r = await settledRun(deps, key.key, 'send_sms', { to: '+15557654321', body: 'Price me' });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(await policySpent('sms-settle')).toEqual({ spent: 8300, reserved: 0 });

    fake.setPrice('-0.00790');
    const summary = await reconcile(deps, { graceSeconds: 0 });
    expect(summary.rows.find((x) => x.id === r.audit_id)).toMatchObject({ after: 'succeeded' });
    expect(
      fake.received.some(
        (x) => x.method === 'GET' && x.path.endsWith(`/Messages/${String(r.output.sid)}.json`),
      ),
    ).toBe(true);
    expect(await auditRow(r.audit_id)).toMatchObject({
      outcome: 'succeeded',
      cost_status: 'settled',
      cost_micros: 7900,
    });
    expect(await policySpent('sms-settle')).toEqual({ spent: 7900, reserved: 0 });
  });

  it('keeps the estimate pending while Twilio has not priced the message', async () => {
    const key = await keyFor(tdb.db, { policy: 'sms' });
    const r = await settledRun(deps, key.key, 'send_sms', { to: '+15557654321', body: 'Not priced yet' });
    if (!r.ok) throw new Error(r.failure.message);
    const summary = await reconcile(deps, { graceSeconds: 0 });
    expect(summary.rows.find((x) => x.id === r.audit_id)).toMatchObject({ after: 'succeeded/cost pending' });
    expect(await auditRow(r.audit_id)).toMatchObject({ cost_status: 'pending', cost_micros: 8300 });
  });

  it('finds a message whose answer was lost by listing messages to the recipient', async () => {
    const key = await keyFor(tdb.db, { policy: 'sms' });
    // The fake creates the message and never answers: the client gives up.
    const created = fake.inject({ mode: 'hang_acted' });
    const r = await settledRun(givesUp, key.key, 'send_sms', { to: '+15550007777', body: 'Lost answer' });
    expect(r).toMatchObject({ ok: false, failure: { code: 'vendor_timeout' } });
    if (r.ok) return;
    expect(await auditRow(r.failure.audit_id)).toMatchObject({ outcome: 'unknown', reserved_micros: 8300 });
    await created;

    await reconcile(deps, { graceSeconds: 0 });
    const list = fake.received.find((x) => x.method === 'GET' && x.form.To === '+15550007777');
    expect(list?.path).toBe(`/2010-04-01/Accounts/${ACCOUNT_SID}/Messages.json`);
    expect(fake.received.filter((x) => x.method === 'POST')).toHaveLength(1);
    const row = await auditRow(r.failure.audit_id);
    expect(row).toMatchObject({
      outcome: 'succeeded',
      reserved_micros: 0,
      cost_micros: 8300,
      cost_status: 'pending',
    });
    expect(row.vendor_object_id).toMatch(/^SM[0-9a-f]{32}$/);
  });

  it('leaves a call unknown, reservation held, when Twilio has no matching message', async () => {
    const key = await keyFor(tdb.db, { policy: 'sms' });
    fake.failNext(503);
    const r = await settledRun(deps, key.key, 'send_sms', { to: '+15550008888', body: 'Never arrived' });
    expect(r).toMatchObject({ ok: false, failure: { code: 'vendor_unavailable', vendor: { status: 503 } } });
    if (r.ok) return;
    const summary = await reconcile(deps, { graceSeconds: 0 });
    expect(summary.rows.find((x) => x.id === r.failure.audit_id)).toMatchObject({ after: 'unknown' });
    expect(await auditRow(r.failure.audit_id)).toMatchObject({ outcome: 'unknown', reserved_micros: 8300 });
  });
});

describe('send_sms secrets', () => {
  it('keeps the account SID and auth token out of the failure, the audit log and the logs when Twilio echoes them', async () => {
    const key = await keyFor(tdb.db, { policy: 'sms' });
    fake.failNext(400, (req) => ({
      code: 21211,
      message: `Invalid 'To' number; you sent ${req.headers.authorization ?? ''} as ${ACCOUNT_SID}:${AUTH_TOKEN}`,
    }));
    const r = await settledRun(deps, key.key, 'send_sms', { to: '+15557654321', body: 'Canary' });
    expect(r).toMatchObject({
      ok: false,
      failure: { code: 'vendor_rejected', vendor: { name: 'twilio', status: 400, code: '21211' } },
    });
    if (r.ok) return;
    expect(r.failure.vendor?.request_id).toMatch(/^RQ/);
    expect(r.failure.message).toContain("Invalid 'To' number");
    expect(await auditRow(r.failure.audit_id)).toMatchObject({
      outcome: 'failed',
      reserved_micros: 0,
      http_status: 400,
    });

    const basic = Buffer.from(`${ACCOUNT_SID}:${AUTH_TOKEN}`).toString('base64');
    const audit = JSON.stringify(await tdb.db.selectFrom('audit_log').selectAll().execute());
    for (const text of [JSON.stringify(r), audit, logs.join('\n')]) {
      for (const secret of [ACCOUNT_SID, AUTH_TOKEN, basic]) expect(text).not.toContain(secret);
    }
  });
});
