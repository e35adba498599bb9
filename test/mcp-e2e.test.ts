// End to end: a real MCP Client over stdio (spawned `leash mcp`) and Streamable HTTP lists the policy's tools,
// calls each against fake vendors, gets structured denials, and never sees a vendor key.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/config/logger.js';
import { createPipeline, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { catalog } from '../tools/index.js';
import { childEnv, LEASH_BIN } from './support/cli.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, TEST_VENDOR_TIMEOUT_MS, testConfig } from './support/governance.js';
import { containsCanary, startVendors, type Vendors } from './support/vendors.js';

let tdb: TestDatabase;
let vendors: Vendors;
let deps: PipelineDeps;
let http: RunningHttp;
let home: string;
const logs: string[] = [];

const POLICY = {
  name: 'e2e',
  limits: { daily_usd: 100 },
  tools: {
    issue_refund: { max_amount_usd: 50, customers: ['cus_A'] },
    send_sms: { from: '+15550001111', to_prefixes: ['+1'], max_segments: 2 },
    send_email: { from: 'Support <support@acme.com>', to_domains: ['acme.com'], max_recipients: 2 },
    get_budget: {},
  },
  loop_guard: { identical_calls: 2, window: '10m' },
};
const POLICY_TOOLS = ['get_budget', 'issue_refund', 'send_email', 'send_sms'];

beforeAll(async () => {
  tdb = await freshDatabase(8);
  vendors = await startVendors();
  home = await mkdtemp(join(tmpdir(), 'leash-e2e-'));
  const config = testConfig({ ...vendors.env, LEASH_HOME: home });
  deps = createPipeline({
    db: tdb.db,
    config,
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'debug' }, (l) => logs.push(l)),
    vendorTimeoutMs: TEST_VENDOR_TIMEOUT_MS,
  });
  await applyTestPolicy(tdb.db, catalog, POLICY);
  await applyTestPolicy(tdb.db, catalog, {
    name: 'tiny',
    limits: { daily_usd: 0.01 },
    tools: { send_sms: { from: '+15550001111' } },
  });
  http = await startHttpServer(deps, { host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await http.close();
  await vendors.close();
  await tdb.close();
  await rm(home, { recursive: true, force: true });
});

beforeEach(() => vendors.reset());

async function httpClient(key: string): Promise<Client> {
  const client = new Client({ name: 'e2e', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${http.url}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

const structured = (r: unknown) => (r as CallToolResult).structuredContent as Record<string, unknown>;

async function callEachTool(client: Client) {
  const p = vendors.stripe.addPayment({ customer: 'cus_A', amount: 2500 });
  const refund = await client.callTool({
    name: 'issue_refund',
    arguments: { payment_intent: p.payment_intent, amount: 1000 },
  });
  expect(refund.isError, JSON.stringify(refund)).toBeFalsy();
  expect(structured(refund)).toMatchObject({
    amount: 1000,
    currency: 'usd',
    customer: 'cus_A',
    sandbox: false,
  });
  const post = vendors.stripe.received.find((r) => r.method === 'POST');
  expect(post?.form.get('amount')).toBe('1000');
  expect(post?.headers['idempotency-key']).toBe(`leash_${String(structured(refund).audit_id)}`);

  const sms = await client.callTool({
    name: 'send_sms',
    arguments: { to: '+15551234567', body: 'Your refund is on its way.' },
  });
  expect(sms.isError, JSON.stringify(sms)).toBeFalsy();
  const smsReq = vendors.twilio.received.find((r) => r.method === 'POST');
  expect(smsReq?.form.To).toBe('+15551234567');
  expect(smsReq?.form.From).toBe('+15550001111');

  const email = await client.callTool({
    name: 'send_email',
    arguments: { to: ['pat@acme.com'], subject: 'Refund', text: 'Done.' },
  });
  expect(email.isError, JSON.stringify(email)).toBeFalsy();
  const emailReq = vendors.resend.received.find((r) => r.method === 'POST');
  expect(JSON.stringify(emailReq?.body)).toContain('support@acme.com');
  expect(emailReq?.headers['idempotency-key']).toBe(`leash_${String(structured(email).audit_id)}`);

  const budget = await client.callTool({ name: 'get_budget', arguments: {} });
  expect(budget.isError).toBeFalsy();
  expect(structured(budget)).toMatchObject({
    policy: 'e2e',
    scopes: [{ scope: 'policy', unit: 'usd_micros', cap: 100_000_000 }],
  });
}

describe('MCP over Streamable HTTP', () => {
  it('answers 401 with WWW-Authenticate to a missing, malformed or unknown vault key', async () => {
    const other = await keyFor(tdb.db, { policy: 'e2e' });
    const unknown = `lsk_${'a'.repeat(12)}_${other.key.slice(-52)}`;
    for (const auth of [undefined, 'Bearer nope', `Bearer ${unknown}`]) {
      const res = await fetch(`${http.url}/mcp`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...(auth ? { authorization: auth } : {}),
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      });
      expect(res.status, await res.clone().text()).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="leash"/);
    }
  });

  it('refuses a non-loopback Host header (DNS rebinding) and serves /healthz', async () => {
    const key = await keyFor(tdb.db, { policy: 'e2e' });
    // fetch cannot forge Host, so use node:http as a rebinding page's browser would arrive.
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${http.url}/mcp`,
        {
          method: 'POST',
          headers: {
            host: 'evil.example',
            authorization: `Bearer ${key.key}`,
            'content-type': 'application/json',
          },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
    expect(status).toBe(403);
    const health = await fetch(`${http.url}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok', sandbox: false });
  });

  it('lists exactly the policy tools with narrowed schemas, limits, annotations and output schemas', async () => {
    const key = await keyFor(tdb.db, { policy: 'e2e' });
    const client = await httpClient(key.key);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(POLICY_TOOLS);
    const refund = tools.find((t) => t.name === 'issue_refund');
    expect(refund?.inputSchema.properties?.amount).toMatchObject({ maximum: 5000 });
    expect(refund?.description).toContain('$50.00');
    expect(refund?.description).toContain('cus_A');
    expect(refund?.annotations).toMatchObject({
      destructiveHint: true,
      openWorldHint: true,
      readOnlyHint: false,
    });
    expect(tools.find((t) => t.name === 'send_sms')?.description).toContain('+1');
    for (const t of tools) expect(t.outputSchema?.type).toBe('object');
    await client.close();
  });

  it('calls every tool against the fake vendors with the policy sender and idempotency keys', async () => {
    const key = await keyFor(tdb.db, { policy: 'e2e' });
    const client = await httpClient(key.key);
    await callEachTool(client);
    await client.close();
  });

  it.each([
    ['issue_refund', 'amount_over_limit', { customer: 'cus_A', amount: 9000 }, {}],
    ['issue_refund', 'customer_not_allowed', { customer: 'cus_Z', amount: 100 }, {}],
    ['send_sms', 'recipient_not_allowed', null, { to: '+447700900123', body: 'hi' }],
    ['send_sms', 'too_many_segments', null, { to: '+15551234567', body: 'x'.repeat(400) }],
    ['send_email', 'recipient_not_allowed', null, { to: ['x@evil.com'], subject: 's', text: 't' }],
    [
      'send_email',
      'too_many_recipients',
      null,
      { to: ['a@acme.com', 'b@acme.com', 'c@acme.com'], subject: 's', text: 't' },
    ],
    ['get_payment', 'tool_not_allowed', null, { payment_intent: 'pi_x' }],
  ])(
    '%s is refused with %s as a structured, non-retryable tool error, audited, with no vendor write',
    async (tool, code, payment, args) => {
      const key = await keyFor(tdb.db, { policy: 'e2e' });
      const client = await httpClient(key.key);
      const p = payment ? vendors.stripe.addPayment(payment) : undefined;
      const result = await client.callTool({
        name: tool,
        arguments: p ? { payment_intent: p.payment_intent } : args,
      });
      expect(result.isError).toBe(true);
      const s = structured(result);
      expect(s).toMatchObject({ retryable: false });
      expect(s.code).toBe(code);
      // The text is all most frameworks show the model: code first, retry advice, audit id.
      const text = (result as CallToolResult).content[0];
      expect(text?.type === 'text' ? text.text : '').toMatch(
        new RegExp(`^${code}: .+\\. Do not retry: .+ audit_id: ${String(s.audit_id)}$`),
      );
      const row = await tdb.db
        .selectFrom('audit_log')
        .selectAll()
        .where('id', '=', String(s.audit_id))
        .executeTakeFirstOrThrow();
      expect(row).toMatchObject({ decision: 'denied', reason: code, tool });
      const writes = [
        ...vendors.stripe.received,
        ...vendors.twilio.received,
        ...vendors.resend.received,
      ].filter((r) => r.method === 'POST');
      expect(writes).toHaveLength(0);
      await client.close();
    },
  );

  it('says what is left and not to retry when the daily cap is reached', async () => {
    const key = await keyFor(tdb.db, { policy: 'tiny' });
    const client = await httpClient(key.key);
    const first = await client.callTool({ name: 'send_sms', arguments: { to: '+15551234567', body: 'one' } });
    expect(first.isError).toBeFalsy();
    const second = await client.callTool({
      name: 'send_sms',
      arguments: { to: '+15551234567', body: 'two' },
    });
    expect(second.isError).toBe(true);
    expect(structured(second)).toMatchObject({
      code: 'budget_exceeded',
      retryable: false,
      details: { cap_micros: 10_000 },
    });
    expect(String(structured(second).message)).toContain('retrying will not help');
    await client.close();
  });

  it('keeps vendor keys out of results, audit rows and logs even when the vendor echoes them', async () => {
    const key = await keyFor(tdb.db, { policy: 'e2e' });
    const client = await httpClient(key.key);
    vendors.twilio.failNext(401, (req) => ({
      code: 20003,
      message: `Authenticate ${String(req.headers.authorization)} ${process.env.NEVER ?? ''}`,
    }));
    vendors.resend.failNext(403, (req) => ({
      name: 'invalid_api_key',
      message: `bad key ${String(req.headers.authorization)}`,
    }));
    const sms = await client.callTool({
      name: 'send_sms',
      arguments: { to: '+15551234567', body: 'canary' },
    });
    const email = await client.callTool({
      name: 'send_email',
      arguments: { to: 'pat@acme.com', subject: 'canary', text: 'x' },
    });
    expect(sms.isError).toBe(true);
    expect(email.isError).toBe(true);
    const rows = await tdb.pool.query('select * from audit_log');
    expect(containsCanary(JSON.stringify([sms, email, rows.rows, logs]))).toBeUndefined();
    await client.close();
  });
});

describe('MCP over stdio (spawned leash mcp)', () => {
  it('lists and calls every policy tool, writes nothing but protocol to stdout and no key to stderr', async () => {
    const key = await keyFor(tdb.db, { policy: 'e2e' });
    const env = childEnv({
      ...vendors.env,
      DATABASE_URL: tdb.url,
      LEASH_HOME: home,
      LEASH_VAULT_KEY: key.key,
      LEASH_LOG: 'debug',
    });
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [LEASH_BIN, 'mcp'],
      env: env as Record<string, string>,
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const client = new Client({ name: 'e2e-stdio', version: '1.0.0' });
    await client.connect(transport);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(POLICY_TOOLS);
    await callEachTool(client);
    vendors.stripe.failNext(401, {
      type: 'invalid_request_error',
      message: `Invalid API Key provided: ${vendors.env.STRIPE_SECRET_KEY}`,
    });
    const p = vendors.stripe.addPayment({ customer: 'cus_A', amount: 100 });
    const failed = await client.callTool({
      name: 'issue_refund',
      arguments: { payment_intent: p.payment_intent },
    });
    expect(failed.isError).toBe(true);
    expect(containsCanary(JSON.stringify(failed))).toBeUndefined();
    await client.close();
    expect(containsCanary(stderr)).toBeUndefined();
  });

  it('exits with a clear message when LEASH_VAULT_KEY is missing', async () => {
    const { runLeash } = await import('./support/cli.js');
    const r = await runLeash(['mcp'], childEnv({ DATABASE_URL: tdb.url, LEASH_HOME: home }));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('LEASH_VAULT_KEY');
    expect(r.stdout).toBe('');
  });
});
