// Covers send_email through the real pipeline, real Postgres and the Resend SDK against a fake Resend server.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { narrowedTool } from '../src/pipeline/narrow.js';
import { reconcile } from '../src/pipeline/reconcile.js';
import { loadPolicy } from '../src/policies/store.js';
import type { PipelineDeps } from '../src/pipeline/run-tool.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { resendVendor } from '../tools/resend/client.js';
import { startResendFake, type ResendFake } from '../tools/resend/sandbox.js';
import { sendEmail } from '../tools/resend/send-email.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import {
  applyTestPolicy,
  GIVE_UP_MS,
  keyFor,
  TEST_VENDOR_TIMEOUT_MS,
  pipelineFor,
  testConfig,
  settledRun,
  readAuditRow,
} from './support/governance.js';

const CANARY = `re_canary_${randomUUID().replaceAll('-', '')}`;
const FROM = 'Support <support@acme.com>';
const catalog: Catalog = {
  tools: new Map([['send_email', sendEmail]]),
  vendors: new Map([['resend', resendVendor]]),
};

let tdb: TestDatabase;
let fake: ResendFake;
let deps: PipelineDeps;
/** The same pipeline with a short vendor deadline, for emails whose fake never answers. */
let givesUp: PipelineDeps;
const logs: string[] = [];

beforeAll(async () => {
  tdb = await freshDatabase();
  fake = await startResendFake();
  const config = testConfig({ RESEND_API_KEY: CANARY, LEASH_RESEND_BASE_URL: fake.url });
  deps = pipelineFor(tdb.db, catalog, config, logs);
  givesUp = pipelineFor(tdb.db, catalog, config, logs, GIVE_UP_MS);
  await applyTestPolicy(tdb.db, catalog, {
    name: 'support-email',
    tools: { send_email: { from: FROM, to_domains: ['acme.com'], max_recipients: 3 } },
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

const auditRow = (id: string | null) => readAuditRow(tdb.db, id);

async function send(args: Record<string, unknown>, through = deps) {
  const key = await keyFor(tdb.db, { policy: 'support-email' });
  return settledRun(through, key.key, 'send_email', args);
}

describe('send_email', () => {
  it('sends from the policy sender with an idempotency key from the audit row and settles price × recipients', async () => {
    const to = ['ann@acme.com', 'bob@acme.com'];
    const r = await send({ to, subject: 'Your refund', text: 'It is on its way.' });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const email = fake.sent.at(-1);
    expect(r.output).toEqual({
      id: email?.id,
      to,
      from: FROM,
      subject: 'Your refund',
      recipients: 2,
      cost_usd: 0.0008,
    });
    expect(fake.received).toHaveLength(1);
    const got = fake.received[0];
    expect(got).toMatchObject({
      method: 'POST',
      path: '/emails',
      body: { from: FROM, to, subject: 'Your refund', text: 'It is on its way.' },
    });
    expect(got?.headers.authorization).toBe(`Bearer ${CANARY}`);
    expect(got?.headers['idempotency-key']).toBe(`leash_${r.audit_id}`);
    const row = await auditRow(r.audit_id);
    expect(row).toMatchObject({
      vendor: 'resend',
      operation: 'POST /emails',
      outcome: 'succeeded',
      cost_micros: 2 * 400,
      cost_status: 'settled',
      reserved_micros: 0,
      vendor_object_id: email?.id,
      request: { to, subject: 'Your refund', text_length: 17 },
    });
  });

  it('accepts a single address and sends it as a one-item list', async () => {
    const r = await send({ to: 'ann@acme.com', subject: 'Hi', html: '<p>Hi</p>' });
    expect(r).toMatchObject({ ok: true, output: { to: ['ann@acme.com'], recipients: 1 } });
    expect(fake.received[0]?.body).toMatchObject({ to: ['ann@acme.com'], html: '<p>Hi</p>' });
  });

  it.each([
    ['recipient_not_allowed', { to: ['ann@acme.com', 'eve@evil.com'], subject: 'x', text: 'y' }],
    [
      'too_many_recipients',
      { to: ['a@acme.com', 'b@acme.com', 'c@acme.com', 'd@acme.com'], subject: 'x', text: 'y' },
    ],
  ])('denies %s, audits it and sends Resend nothing', async (code, args) => {
    const r = await send(args);
    expect(r).toMatchObject({ ok: false, failure: { code, retryable: false } });
    expect(fake.received).toHaveLength(0);
    if (!r.ok) expect(await auditRow(r.failure.audit_id)).toMatchObject({ decision: 'denied', reason: code });
  });

  it.each([
    ['neither text nor html', { to: ['ann@acme.com'], subject: 'x' }, /text or html/],
    [
      'a sender chosen by the agent',
      { to: ['ann@acme.com'], subject: 'x', text: 'y', from: 'ceo@acme.com' },
      /from/,
    ],
  ])('rejects %s as invalid_input and sends Resend nothing', async (_what, args, message) => {
    const r = await send(args);
    expect(r).toMatchObject({ ok: false, failure: { code: 'invalid_input' } });
    if (!r.ok) expect(r.failure.message).toMatch(message);
    expect(fake.received).toHaveLength(0);
  });

  it('keeps the API key out of the failure, the audit log and the logs when Resend echoes it back', async () => {
    fake.failNext(401, (req) => ({
      name: 'invalid_api_key',
      message: `API key ${String(req.headers.authorization).slice(7)} is invalid (${req.headers.authorization})`,
    }));
    const r = await send({ to: ['ann@acme.com'], subject: 'x', text: 'y' });
    expect(r).toMatchObject({ ok: false, failure: { code: 'vendor_auth', vendor: { status: 401 } } });
    expect(fake.received[0]?.headers.authorization).toBe(`Bearer ${CANARY}`);
    if (!r.ok)
      expect(await auditRow(r.failure.audit_id)).toMatchObject({ outcome: 'failed', http_status: 401 });
    const rows = await tdb.db.selectFrom('audit_log').selectAll().execute();
    for (const text of [JSON.stringify(r), JSON.stringify(rows), logs.join('\n')])
      expect(text).not.toContain(CANARY);
  });
});

describe('narrowing', () => {
  it('writes the policy limits into the tool description and the input schema', async () => {
    const policy = await loadPolicy(tdb.db, 'support-email');
    if (!policy) throw new Error('policy not applied');
    const narrowed = narrowedTool(sendEmail, policy);
    expect(narrowed.description).toContain(
      `Recipients must be at acme.com. At most 3 recipients. Sent from ${FROM}.`,
    );
    const schema = JSON.stringify(z.toJSONSchema(narrowed.input, { io: 'input' }));
    expect(schema).toContain('"maxItems":3');
    expect(schema).toContain('at acme.com; at most 3');
    expect(schema).not.toContain('"from"');
  });
});

describe('sandbox', () => {
  it('starts one shared fake per process that the SDK sends through and reads back', async () => {
    const sandbox = await resendVendor.sandbox();
    expect(await resendVendor.sandbox()).toBe(sandbox);
    const credential = {
      vendor: 'resend',
      name: 'default',
      secret: sandbox.secret,
      baseUrl: sandbox.baseUrl,
    };
    const client = await resendVendor.createClient(credential, { timeoutMs: TEST_VENDOR_TIMEOUT_MS });
    const sent = await client.run((sdk, signal) =>
      sdk.emails.send({ from: FROM, to: 'ann@acme.com', subject: 'Hi', text: 'Hello' }, { signal }),
    );
    const email = await client.run((sdk, signal) => sdk.emails.get(sent.id, { signal }));
    expect(email).toMatchObject({ id: sent.id, to: ['ann@acme.com'], from: FROM, last_event: 'delivered' });
  });
});

describe('unknown outcomes', () => {
  it('settles an email whose answer timed out by finding it at Resend, without sending it again', async () => {
    // The fake sends the email and never answers: the client gives up.
    const sent = fake.inject({ mode: 'hang_acted' });
    const r = await send({ to: ['ann@acme.com'], subject: 'Slow one', text: 'Hello' }, givesUp);
    expect(r).toMatchObject({ ok: false, failure: { code: 'vendor_timeout' } });
    if (r.ok) return;
    const id = r.failure.audit_id ?? '';
    expect(await auditRow(id)).toMatchObject({ outcome: 'unknown', reserved_micros: 400, cost_micros: 0 });
    await sent;
    const sentBefore = fake.sent.length;

    const summary = await reconcile(deps, { graceSeconds: 0 });
    expect(summary.rows.find((x) => x.id === id)).toMatchObject({ after: 'succeeded' });
    expect(fake.sent).toHaveLength(sentBefore);
    expect(fake.received.filter((x) => x.method === 'POST')).toHaveLength(1);
    expect(await auditRow(id)).toMatchObject({
      outcome: 'succeeded',
      reserved_micros: 0,
      cost_micros: 400,
      vendor_object_id: fake.sent.at(-1)?.id,
    });
  });
});
