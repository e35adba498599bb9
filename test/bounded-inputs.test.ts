// Covers bounded inputs and clear refusals: vendor-sized string limits, duplicate recipients, bounded sandbox
// fakes, HTTP body size and nesting limits, and admin API / CLI filters that cannot be parsed.
import { connect } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { adminRoutes } from '../src/admin/routes.js';
import { parseTime, TimeInputError } from '../src/audit/query.js';
import { createLogger } from '../src/config/logger.js';
import { createPipeline, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { parseUsd, UsdInputError } from '../src/policy/money.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { catalog } from '../tools/index.js';
import { KEEP_RECENT as RESEND_KEEP, startResendFake } from '../tools/resend/sandbox.js';
import { startStripeFake } from '../tools/stripe/sandbox.js';
import { startTwilioFake } from '../tools/twilio/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig, settledRun } from './support/governance.js';
import { cli } from './support/run-cli.js';
import { startVendors, type Vendors } from './support/vendors.js';

const ADMIN_TOKEN = 'admin-token-for-bounded-inputs-0123456789';
let tdb: TestDatabase;
let vendors: Vendors;
let deps: PipelineDeps;
let http: RunningHttp;
let home: string;
let key: string;

beforeAll(async () => {
  tdb = await freshDatabase(6);
  vendors = await startVendors();
  home = await mkdtemp(join(tmpdir(), 'leash-bounded-'));
  const config = testConfig({ ...vendors.env, LEASH_ADMIN_TOKEN: ADMIN_TOKEN, LEASH_HOME: home });
  deps = createPipeline({
    db: tdb.db,
    config,
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'silent' }),
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'bounded',
    limits: { daily_usd: 1000 },
    tools: {
      issue_refund: { max_amount_usd: 500 },
      get_payment: {},
      send_sms: { from: '+15550001111' },
      send_email: { from: 'Support <support@acme.com>' },
      get_budget: {},
    },
  });
  key = (await keyFor(tdb.db, { policy: 'bounded', agent: 'bounded-agent' })).key;
  http = await startHttpServer(deps, { host: '127.0.0.1', port: 0, routes: [adminRoutes(deps, config)] });
});

afterAll(async () => {
  await http.close();
  await vendors.close();
  await tdb.close();
  await rm(home, { recursive: true, force: true });
});

beforeEach(() => vendors.reset());

/** Audit rows written since `since`, with the stored size of each. */
const auditSince = (since: Date) =>
  tdb.db
    .selectFrom('audit_log')
    .select(['decision', sql<number>`pg_column_size(audit_log.*)`.as('bytes')])
    .where('ts', '>=', since)
    .execute();

/**
 * Calls a tool and expects an invalid_input refusal naming `field` and what was expected, with no vendor request
 * and nothing large kept: at most a small denied audit row.
 */
async function refused(tool: string, args: Record<string, unknown>, field: string, expected: RegExp) {
  const since = new Date(Date.now() - 1);
  const r = await settledRun(deps, key, tool, args);
  expect(r.ok, JSON.stringify(r).slice(0, 500)).toBe(false);
  if (r.ok) return;
  expect(r.failure.code).toBe('invalid_input');
  const issues = (r.failure.details as { issues: { field: string; problem: string }[] }).issues;
  const problems = issues.filter((i) => i.field === field).map((i) => i.problem);
  expect(
    problems.some((p) => expected.test(p)),
    JSON.stringify(issues),
  ).toBe(true);
  expect(r.failure.message.length).toBeLessThan(2000);
  expect(vendors.requests()).toBe(0);
  for (const row of await auditSince(since)) {
    expect(row.decision).toBe('denied');
    expect(row.bytes).toBeLessThan(64 * 1024);
  }
}

describe('tool inputs are bounded at the vendor’s own limits', () => {
  it('refuses a 1 MB payment_intent or charge without calling Stripe or keeping a large audit row', async () => {
    const huge = `pi_${'a'.repeat(1 << 20)}`;
    await refused('issue_refund', { payment_intent: huge }, 'payment_intent', /at most 255 characters/);
    await refused('get_payment', { payment_intent: huge }, 'payment_intent', /at most 255 characters/);
    await refused('issue_refund', { charge: `ch_${'b'.repeat(300)}` }, 'charge', /at most 255 characters/);
  });

  it('refuses a refund amount over Stripe’s eight digits', async () => {
    await refused('issue_refund', { payment_intent: 'pi_123', amount: 100_000_000 }, 'amount', /99999999/);
  });

  it('still refunds a payment with a normal id', async () => {
    const p = vendors.stripe.addPayment({ amount: 500 });
    const r = await settledRun(deps, key, 'issue_refund', { payment_intent: p.payment_intent, amount: 100 });
    expect(r.ok, JSON.stringify(r)).toBe(true);
  });

  it('refuses an email address over 254 characters or with a local part over 64, in to and reply_to', async () => {
    const longLocal = `${'x'.repeat(70_000)}@acme.com`;
    await refused('send_email', { to: longLocal, subject: 's', text: 't' }, 'to', /local part.*64/);
    await refused('send_email', { to: [longLocal], subject: 's', text: 't' }, 'to.0', /local part.*64/);
    const local65 = `${'x'.repeat(65)}@acme.com`;
    await refused('send_email', { to: [local65], subject: 's', text: 't' }, 'to.0', /local part.*64/);
    const long = `${'x'.repeat(60)}@${'d'.repeat(63)}.${'e'.repeat(63)}.${'f'.repeat(63)}.acme.com`;
    expect(long.length).toBeGreaterThan(254);
    await refused('send_email', { to: [long], subject: 's', text: 't' }, 'to.0', /at most 254/);
    await refused(
      'send_email',
      { to: 'a@acme.com', reply_to: local65, subject: 's', text: 't' },
      'reply_to',
      /local part.*64/,
    );
  });

  it('accepts an address of exactly 64 + 1 + 189 = 254 characters', async () => {
    const domain = `${'d'.repeat(63)}.${'e'.repeat(63)}.${'f'.repeat(57)}.com`;
    const max = `${'x'.repeat(64)}@${domain}`;
    expect(max.length).toBe(254);
    const r = await settledRun(deps, key, 'send_email', { to: max, subject: 'ok', text: 'ok' });
    expect(r.ok, JSON.stringify(r).slice(0, 500)).toBe(true);
  });

  it('refuses a subject over 998 characters and a body over 1,000,000', async () => {
    await refused('send_email', { to: 'a@acme.com', subject: 's'.repeat(999), text: 't' }, 'subject', /998/);
    await refused(
      'send_email',
      { to: 'a@acme.com', subject: 's', html: 'h'.repeat(1_000_001) },
      'html',
      /1000000|1,000,000/,
    );
  });

  it('counts an SMS body as Twilio does: extension characters take two, emoji two', async () => {
    // 800 '€' are 800 JS characters but 1,600 septets; 801 are over Twilio's limit.
    const ok = await settledRun(deps, key, 'send_sms', { to: '+15551234567', body: '€'.repeat(800) });
    expect(ok.ok, JSON.stringify(ok).slice(0, 300)).toBe(true);
    vendors.reset();
    await refused('send_sms', { to: '+15551234567', body: '€'.repeat(801) }, 'body', /1600/);
    await refused('send_sms', { to: '+15551234567', body: '😀'.repeat(801) }, 'body', /1600/);
    await refused('send_sms', { to: '+15551234567', body: 'a'.repeat(1 << 20) }, 'body', /1600/);
  });
});

describe('duplicate recipients', () => {
  it('merges duplicate addresses (any case) before pricing and sending', async () => {
    const r = await settledRun(deps, key, 'send_email', {
      to: ['ann@acme.com', 'ANN@ACME.COM', 'bob@acme.com', 'ann@acme.com'],
      subject: 'Hi',
      text: 'Once each.',
    });
    expect(r.ok, JSON.stringify(r)).toBe(true);
    if (!r.ok) return;
    expect(r.output).toMatchObject({ to: ['ann@acme.com', 'bob@acme.com'], recipients: 2 });
    const sent = vendors.resend.received.find((q) => q.method === 'POST');
    expect((sent?.body as { to: string[] }).to).toEqual(['ann@acme.com', 'bob@acme.com']);
    const row = await tdb.db
      .selectFrom('audit_log')
      .select(['cost_micros', 'request'])
      .where('id', '=', r.audit_id)
      .executeTakeFirstOrThrow();
    expect(row.cost_micros).toBe(2 * 400); // the default price per recipient
  });
});

describe('sandbox fakes keep a bounded window', () => {
  it('keeps only the newest messages and requests, and still answers for the ones it keeps', async () => {
    const fake = await startResendFake();
    try {
      const total = RESEND_KEEP + 50;
      const ids: string[] = [];
      for (let i = 0; i < total; i++) {
        const res = await fetch(`${fake.url}/emails`, {
          method: 'POST',
          headers: { authorization: 'Bearer re_x', 'content-type': 'application/json' },
          body: JSON.stringify({ from: 'a@acme.com', to: 'b@acme.com', subject: `n${i}`, text: 'x' }),
        });
        ids.push(((await res.json()) as { id: string }).id);
      }
      expect(fake.sent.length).toBe(RESEND_KEEP);
      expect(fake.received.length).toBeLessThanOrEqual(RESEND_KEEP);
      expect(fake.sent.at(-1)?.subject).toBe(`n${total - 1}`);
      const newest = await fetch(`${fake.url}/emails/${ids.at(-1) ?? ''}`, {
        headers: { authorization: 'Bearer re_x' },
      });
      expect(newest.status).toBe(200);
    } finally {
      await fake.close();
    }
  }, 120_000); // a thousand requests one after another: slow on a busy machine

  it('bounds the Stripe and Twilio fakes too', async () => {
    const keep = 25; // the same window code as the default KEEP_RECENT, smaller to keep the test quick
    const [stripe, twilio] = await Promise.all([startStripeFake(false, { keep }), startTwilioFake({ keep })]);
    try {
      const sid = `AC${'1'.repeat(32)}`;
      const auth = `Basic ${Buffer.from(`${sid}:t`).toString('base64')}`;
      const n = keep + 20;
      for (let i = 0; i < n; i++) {
        await fetch(`${twilio.url}/2010-04-01/Accounts/${sid}/Messages.json`, {
          method: 'POST',
          headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ To: '+15551234567', From: '+15550001111', Body: `m${i}` }).toString(),
        });
        await fetch(`${stripe.url}/v1/charges/ch_${i}`, { headers: { authorization: 'Bearer sk_x' } });
      }
      expect(twilio.received.length).toBe(keep);
      expect(stripe.received.length).toBe(keep);
      const list = await fetch(`${twilio.url}/2010-04-01/Accounts/${sid}/Messages.json?PageSize=5000`, {
        headers: { authorization: auth },
      });
      const messages = ((await list.json()) as { messages: { body: string }[] }).messages;
      expect(messages.length).toBe(keep);
      expect(messages[0]?.body).toBe(`m${n - 1}`);
    } finally {
      await Promise.all([stripe.close(), twilio.close()]);
    }
  });
});

/** Sends raw bytes and returns what came back before the server closed the connection. */
function rawRequest(head: string, body: Buffer | string): Promise<{ text: string; error?: string }> {
  return new Promise((resolve) => {
    const socket = connect(http.port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('utf8')));
    socket.on('error', (e: NodeJS.ErrnoException) => resolve({ text, error: e.code ?? e.message }));
    socket.on('close', () => resolve({ text }));
    socket.write(head);
    socket.write(body, () => socket.end());
  });
}

describe('HTTP body limits', () => {
  it('answers an over-limit body with 413 and a JSON-RPC error, then closes the connection cleanly', async () => {
    const body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_sms","arguments":{"body":"${'a'.repeat(2 << 20)}"}}}`;
    const res = await fetch(`${http.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body,
    });
    expect(res.status).toBe(413);
    expect(res.headers.get('connection')).toBe('close');
    const json = (await res.json()) as { jsonrpc: string; error: { code: number; message: string } };
    expect(json.jsonrpc).toBe('2.0');
    expect(json.error.message).toMatch(/1048576 bytes/);
    expect(vendors.requests()).toBe(0);
  });

  it('answers 413 to a client that sends a large body in one go, with no connection reset', async () => {
    const size = 3 << 20;
    const head =
      `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\n` +
      `Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${size}\r\n\r\n`;
    const r = await rawRequest(head, Buffer.alloc(size, 0x20));
    expect(r.error).toBeUndefined();
    expect(r.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(r.text).toContain('"jsonrpc":"2.0"');
  });

  it('answers deeply nested JSON with 400, not 500', async () => {
    const depth = 10_000;
    const args = `{"to":"+15551234567","body":"hi","x":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    const body = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_sms","arguments":${args}}}`;
    const res = await fetch(`${http.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body,
    });
    expect(res.status).toBe(400);
    const json = (await res.json()) as { jsonrpc: string; error: { message: string } };
    expect(json.error.message).toMatch(/nest/);
    expect(vendors.requests()).toBe(0);
  });
});

describe('filters that cannot be parsed', () => {
  const admin = (path: string) =>
    fetch(`${http.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

  it.each([
    ['/admin/audit?since=999999999w', 'since'],
    ['/admin/audit?until=999999999h', 'until'],
    ['/admin/audit?min_usd=1e309', 'min_usd'],
    ['/admin/audit?min_usd=-1', 'min_usd'],
    ['/admin/audit?min_usd=0x10', 'min_usd'],
    [`/admin/audit?since=${encodeURIComponent('2026-01-01T00:00:00+99:99')}`, 'since'],
    ['/admin/audit?limit=1e309', 'limit'],
    ['/admin/spend?since=999999999w', 'since'],
    [`/admin/spend?until=${encodeURIComponent('2026-01-01T00:00:00-24:00')}`, 'until'],
  ])('GET %s is 400 naming %s', async (path, field) => {
    const res = await admin(path);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: string };
    expect(json.error).toContain(field);
  });

  it('accepts the same filters when they are valid', async () => {
    expect((await admin('/admin/audit?min_usd=0.30&since=2h')).status).toBe(200);
    expect(
      (await admin(`/admin/audit?since=${encodeURIComponent('2026-01-01T00:00:00+05:30')}`)).status,
    ).toBe(200);
    expect((await admin('/admin/spend?since=7d')).status).toBe(200);
  });

  it.each([
    [['audit', 'query', '--since', '999999999w'], '--since'],
    [['audit', 'query', '--until', '2026-01-01T00:00:00+99:99'], '--until'],
    [['audit', 'query', '--min-usd', '1e309'], '--min-usd'],
    [['audit', 'query', '--min-usd', '9999999999999'], '--min-usd'],
    [['spend', '--since', '999999999w'], '--since'],
  ])('leash %j exits 2 naming %s', async (argv, flag) => {
    const r = await cli(argv, { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(flag);
    expect(r.stderr).not.toMatch(/internal error/);
  });

  it('parses dollars one way: exact micros, bounded, naming the field', () => {
    expect(parseUsd('100', 'min_usd')).toBe(100_000_000);
    expect(parseUsd('$0.30', 'min_usd')).toBe(300_000);
    expect(parseUsd('0.0083', 'min_usd')).toBe(8_300);
    for (const bad of ['1e309', '-1', '', 'abc', '0.0000001', 'Infinity', '1,000', '9999999999999']) {
      expect(() => parseUsd(bad, 'min_usd'), bad).toThrow(UsdInputError);
      expect(() => parseUsd(bad, 'min_usd'), bad).toThrow(/min_usd/);
    }
  });

  it('refuses times outside what the database can store, and offsets outside ±23:59', () => {
    expect(() => parseTime('999999999w', 'since')).toThrow(TimeInputError);
    expect(() => parseTime('999999999h', 'since')).toThrow(TimeInputError);
    expect(() => parseTime('2026-01-01T00:00:00+99:99', 'since')).toThrow(TimeInputError);
    expect(() => parseTime('2026-01-01T00:00:00+05:60', 'since')).toThrow(TimeInputError);
    expect(parseTime('2026-01-01T00:00:00+05:30', 'since').toISOString()).toBe('2025-12-31T18:30:00.000Z');
    expect(parseTime('30d', 'since', new Date('2026-01-31T00:00:00Z')).toISOString()).toBe(
      '2026-01-01T00:00:00.000Z',
    );
  });
});
