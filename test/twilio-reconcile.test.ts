// Covers one vendor object per audit row: send_sms keeps a keyed body hash (not the body), reconcile matches lost messages on it, never credits a SID twice, leaves ambiguous rows unknown, and the database refuses a second owner.
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { settleCall } from '../src/audit/write.js';
import { reconcile } from '../src/pipeline/reconcile.js';
import type { PipelineDeps } from '../src/pipeline/run-tool.js';
import { defineTool, type Catalog, type ToolDefinition } from '../src/pipeline/tool.js';
import { twilioVendor, type TwilioClient } from '../tools/twilio/client.js';
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

const ACCOUNT_SID = `AC${'5e'.repeat(16)}`;
const FROM = '+15550001111';
const AUDIT_KEY = Buffer.alloc(32, 0x5a);
const hmac = (s: string) => createHmac('sha256', AUDIT_KEY).update(s, 'utf8').digest('hex');
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/** send_sms with the old matching: the earliest message to the recipient with the same body length, owned or not. */
const greedySms: ToolDefinition = defineTool<{ to: string; body: string }, undefined, unknown, TwilioClient>({
  ...(sendSms as ToolDefinition<{ to: string; body: string }, undefined, unknown, TwilioClient>),
  name: 'send_sms_greedy',
  async reconcile(ctx, row) {
    const to = String(row.request?.to);
    const list = await ctx.client.run((api) => api.messages.list({ to, limit: 50 }));
    const m = list
      .filter((x) => x.body.length === row.request?.body_length)
      .sort((a, b) => a.dateCreated.getTime() - b.dateCreated.getTime())[0];
    return m
      ? { outcome: 'succeeded', costMicros: 8300, costStatus: 'settled', vendorObjectId: m.sid }
      : { outcome: 'unknown' };
  },
});

const catalog: Catalog = {
  tools: new Map([
    ['send_sms', sendSms],
    ['send_sms_greedy', greedySms],
  ]),
  vendors: new Map([['twilio', twilioVendor]]),
};

let tdb: TestDatabase;
let fake: TwilioFake;
let deps: PipelineDeps;
/** The same pipeline with a short vendor deadline, for messages whose fake never answers. */
let givesUp: PipelineDeps;

beforeAll(async () => {
  tdb = await freshDatabase();
  fake = await startTwilioFake();
  const config = testConfig({
    TWILIO_ACCOUNT_SID: ACCOUNT_SID,
    TWILIO_AUTH_TOKEN: '7e'.repeat(16),
    LEASH_TWILIO_BASE_URL: fake.url,
    LEASH_AUDIT_KEY: AUDIT_KEY.toString('hex'),
  });
  deps = pipelineFor(tdb.db, catalog, config, []);
  givesUp = pipelineFor(tdb.db, catalog, config, [], GIVE_UP_MS);
  const sms = { from: FROM, to_prefixes: ['+1'] };
  await applyTestPolicy(tdb.db, catalog, {
    name: 'otp',
    limits: { daily_usd: 5 },
    tools: { send_sms: sms, send_sms_greedy: sms },
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

const owners = async (sid: unknown) =>
  (
    await tdb.db.selectFrom('audit_log').select('id').where('vendor_object_id', '=', String(sid)).execute()
  ).map((r) => r.id);

async function send(tool: string, to: string, body: string, through = deps) {
  const key = await keyFor(tdb.db, { policy: 'otp' });
  return settledRun(through, key.key, tool, { to, body });
}

/** A call whose answer is lost: the fake creates the message and never answers, the client gives up. */
async function sendLost(to: string, body: string, tool = 'send_sms') {
  const created = fake.inject({ mode: 'hang_acted' });
  const r = await send(tool, to, body, givesUp);
  if (r.ok) throw new Error('expected the call to time out');
  expect(r.failure.code).toBe('vendor_timeout');
  await created;
  return r.failure.audit_id;
}

/** A call that never reached Twilio's message store. */
async function sendRefused(to: string, body: string, tool = 'send_sms') {
  fake.failNext(503);
  const r = await send(tool, to, body);
  if (r.ok) throw new Error('expected the call to fail');
  return r.failure.audit_id;
}

describe('send_sms audit row', () => {
  it('keeps the HMAC-SHA256 of the body under the audit key, never the body or its plain SHA-256', async () => {
    const body = 'Your code is 482913';
    const r = await send('send_sms', '+15550100001', body);
    if (!r.ok) throw new Error(r.failure.message);
    const row = await auditRow(r.audit_id);
    expect(row.request).toMatchObject({
      to: '+15550100001',
      body_length: body.length,
      body_sha256: hmac(body),
    });
    expect(JSON.stringify(row)).not.toContain('482913');
    expect(JSON.stringify(row)).not.toContain(sha256(body));
  });
});

describe('send_sms reconcile by body hash', () => {
  it("leaves a lost code unknown instead of crediting it with an earlier code's SID", async () => {
    const to = '+15550100002';
    const first = await send('send_sms', to, 'Your code is 111111');
    if (!first.ok) throw new Error(first.failure.message);
    const lost = await sendRefused(to, 'Your code is 222222'); // same length, never created

    const summary = await reconcile(deps, { graceSeconds: 0 });
    expect(summary.rows.find((x) => x.id === lost)).toMatchObject({ after: 'unknown' });
    expect(await auditRow(lost)).toMatchObject({
      outcome: 'unknown',
      vendor_object_id: null,
      reserved_micros: 8300,
    });
    expect(await owners(first.output.sid)).toEqual([first.audit_id]);
  });

  it('credits a lost message with its own SID, skipping the same text already owned by another row', async () => {
    const to = '+15550100003';
    const earlier = await send('send_sms', to, 'Your order has shipped');
    if (!earlier.ok) throw new Error(earlier.failure.message);
    const lost = await sendLost(to, 'Your order has shipped');

    await reconcile(deps, { graceSeconds: 0 });
    const row = await auditRow(lost);
    expect(row).toMatchObject({ outcome: 'succeeded', reserved_micros: 0 });
    expect(row.vendor_object_id).toMatch(/^SM[0-9a-f]{32}$/);
    expect(row.vendor_object_id).not.toBe(earlier.output.sid);
    expect(await owners(earlier.output.sid)).toEqual([earlier.audit_id]);
  });

  it('leaves a row written before the audit key (a plain SHA-256 body hash) unknown, without crashing', async () => {
    const to = '+15550100007';
    const body = 'Your code is 555555';
    const lost = await sendLost(to, body);
    // As an upgraded server finds it: the body hash taken before hashes were keyed.
    await sql`update audit_log set request = jsonb_set(request, '{body_sha256}', to_jsonb(${sha256(body)}::text)) where id = ${lost}::uuid`.execute(
      tdb.db,
    );

    const summary = await reconcile(deps, { graceSeconds: 0 });
    expect(summary.rows.find((x) => x.id === lost)).toMatchObject({ after: 'unknown' });
    expect(await auditRow(lost)).toMatchObject({
      outcome: 'unknown',
      vendor_object_id: null,
      reserved_micros: 8300,
    });
  });

  it('leaves both rows unknown, and says why, when two lost calls match the same messages', async () => {
    const to = '+15550100004';
    const a = await sendLost(to, 'Reminder: appointment at 3pm');
    const b = await sendLost(to, 'Reminder: appointment at 3pm');

    const summary = await reconcile(deps, { graceSeconds: 0 });
    for (const id of [a, b]) {
      expect(summary.rows.find((x) => x.id === id)).toMatchObject({
        after: 'unknown',
        note: expect.stringMatching(/2 messages match/) as unknown,
      });
      expect(await auditRow(id)).toMatchObject({
        outcome: 'unknown',
        vendor_object_id: null,
        reserved_micros: 8300,
      });
    }
  });
});

describe('one vendor object, one audit row', () => {
  it('does not settle a row with a SID another row owns, whatever the tool answers', async () => {
    const to = '+15550100005';
    const first = await send('send_sms', to, 'Your code is 333333');
    if (!first.ok) throw new Error(first.failure.message);
    const lost = await sendRefused(to, 'Your code is 444444', 'send_sms_greedy');

    const summary = await reconcile(deps, { graceSeconds: 0 });
    expect(summary.rows.find((x) => x.id === lost)).toMatchObject({
      after: 'unknown',
      note: expect.stringContaining(first.audit_id) as unknown,
    });
    expect(await auditRow(lost)).toMatchObject({
      outcome: 'unknown',
      vendor_object_id: null,
      reserved_micros: 8300,
    });
    expect(await owners(first.output.sid)).toEqual([first.audit_id]);
  });

  it('is enforced by the database for calls that create objects, not for reads of one object', async () => {
    const first = await send('send_sms', '+15550100006', 'Hello once');
    if (!first.ok) throw new Error(first.failure.message);
    const lost = await sendRefused('+15550100006', 'Hello twice');
    await expect(
      settleCall(
        tdb.db,
        lost ?? '',
        'succeeded',
        8300,
        'settled',
        { vendor_object_id: String(first.output.sid) },
        deps.auditHash,
      ),
    ).rejects.toMatchObject({ code: '23505' });
    // The refused settle changed nothing: the row is still waiting, and the object still has one owner.
    const lostRow = await tdb.db
      .selectFrom('audit_log')
      .select(['outcome', 'vendor_object_id'])
      .where('id', '=', lost ?? '')
      .executeTakeFirstOrThrow();
    expect(lostRow.outcome).not.toBe('succeeded');
    expect(lostRow.vendor_object_id).toBeNull();
    expect(await owners(first.output.sid)).toEqual([first.audit_id]);
    const claims = await tdb.db
      .selectFrom('audit_objects')
      .select('audit_id')
      .where('object_id', '=', String(first.output.sid))
      .execute();
    expect(claims.map((c) => c.audit_id)).toEqual([first.audit_id]);

    const read = (id: string) => ({
      id,
      tool: 'get_payment',
      vendor: 'stripe',
      operation: 'GET /v1/payment_intents/{id}',
      decision: 'allowed' as const,
      outcome: 'succeeded' as const,
      reserved_micros: 0,
      cost_micros: 0,
      cost_status: 'settled' as const,
      budget: '[]',
      sandbox: false,
      metadata: '{}',
      vendor_object_id: 'pi_read_twice',
    });
    await tdb.db
      .insertInto('audit_log')
      .values([read(randomUUID()), read(randomUUID())])
      .execute();
    expect(await owners('pi_read_twice')).toHaveLength(2);
  });
});
