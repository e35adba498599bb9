// Covers polling that is not a loop: read-only tools are not loop-guarded (the hourly request cap still counts the
// ones that count as requests), get_approval's wait_seconds returns as soon as a person decides (or the key is
// revoked, or the client goes away), and another key's approval id is approval_not_found.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../src/config/logger.js';
import {
  createPipeline,
  runCall,
  runTool,
  type PipelineDeps,
  type PipelineEvent,
} from '../src/pipeline/run-tool.js';
import type { ToolCallResult } from '../src/pipeline/run-tool.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { getApproval } from '../tools/leash/get-approval.js';
import { getBudget } from '../tools/leash/get-budget.js';
import { stripeVendor } from '../tools/stripe/client.js';
import { getPayment } from '../tools/stripe/get-payment.js';
import { issueRefund } from '../tools/stripe/issue-refund.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';
import { cli } from './support/run-cli.js';

let tdb: TestDatabase;
let fake: StripeFake;
let deps: PipelineDeps;
let http: RunningHttp;
let env: Record<string, string>;
const events: PipelineEvent[] = [];
const catalog: Catalog = {
  tools: new Map([issueRefund, getPayment, getBudget, getApproval].map((t) => [t.name, t])),
  vendors: new Map([['stripe', stripeVendor]]),
};

beforeAll(async () => {
  tdb = await freshDatabase(12);
  fake = await startStripeFake(false);
  const config = testConfig({
    STRIPE_SECRET_KEY: 'sk_test_canary_polling_1',
    LEASH_STRIPE_BASE_URL: fake.url,
  });
  deps = createPipeline({
    db: tdb.db,
    config,
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'silent' }),
    onEvent: (e) => void events.push(e),
  });
  http = await startHttpServer(deps, { host: '127.0.0.1', port: 0 });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'polled',
    limits: { per_key_hourly_requests: 35 },
    tools: {
      issue_refund: { approval: { above_usd: 100, expires: '30m' } },
      get_payment: {},
      get_budget: {},
    },
    loop_guard: { identical_calls: 3, window: '10m' },
  });
  env = { DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent/leash-polling', LEASH_LOG: 'silent' };
});

afterAll(async () => {
  await http.close();
  await fake.close();
  await tdb.close();
});

const codes = (rs: ToolCallResult[]) => rs.map((r) => (r.ok ? 'ok' : r.failure.code));

async function held(key: string, amount = 15_000): Promise<{ id: string; args: Record<string, unknown> }> {
  const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
  const args = { payment_intent: p.payment_intent, amount };
  const r = await runTool(deps, key, 'issue_refund', args);
  expect(r).toMatchObject({ ok: false, failure: { code: 'approval_required' } });
  return { id: r.ok ? '' : String(r.failure.details?.approval_id), args };
}

/** Resolves once the pipeline has admitted a get_approval call of this key (so the call is now waiting). */
const admittedWait = (keyId: string) =>
  vi.waitFor(
    () => {
      expect(
        events.some((e) => e.type === 'admitted' && e.tool === 'get_approval' && e.key_id === keyId),
      ).toBe(true);
    },
    { timeout: 10_000, interval: 20 },
  );

async function serially(n: number, f: () => Promise<ToolCallResult>): Promise<ToolCallResult[]> {
  const out: ToolCallResult[] = [];
  for (let i = 0; i < n; i++) out.push(await f());
  return out;
}

describe('read-only tools and the loop guard', () => {
  it('answers 40 identical get_budget and get_approval calls in the window, none refused loop_detected', async () => {
    const key = await keyFor(tdb.db, { policy: 'polled' });
    const { id } = await held(key.key);
    const budgets = await serially(40, () => runTool(deps, key.key, 'get_budget', {}));
    expect(codes(budgets)).toEqual(Array<string>(40).fill('ok'));
    const approvals = await serially(40, () => runTool(deps, key.key, 'get_approval', { approval_id: id }));
    expect(codes(approvals)).toEqual(Array<string>(40).fill('ok'));
    // Free reads: the hourly request cap has not moved.
    const last = budgets.at(-1);
    const scopes = (last?.ok ? last.output.scopes : []) as { unit: string; used: number }[];
    expect(scopes.find((s) => s.unit === 'requests')?.used).toBe(0);
  });

  it('still counts a read-only tool that counts as a request against the hourly cap, and never as a loop', async () => {
    const key = await keyFor(tdb.db, { policy: 'polled' });
    const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
    const reads = await serially(40, () =>
      runTool(deps, key.key, 'get_payment', { payment_intent: p.payment_intent }),
    );
    expect(codes(reads)).toEqual([
      ...Array<string>(35).fill('ok'),
      ...Array<string>(5).fill('request_limit_exceeded'),
    ]);
  });

  it('still refuses the fourth identical call with an effect loop_detected', async () => {
    await applyTestPolicy(tdb.db, catalog, {
      name: 'looped',
      tools: { issue_refund: {} },
      loop_guard: { identical_calls: 3, window: '10m' },
    });
    const key = await keyFor(tdb.db, { policy: 'looped' });
    const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
    const rs = await serially(4, () =>
      runTool(deps, key.key, 'issue_refund', { payment_intent: p.payment_intent, amount: 100 }),
    );
    expect(codes(rs)).toEqual(['ok', 'ok', 'ok', 'loop_detected']);
    await deps.settler.flush();
  });
});

describe('get_approval', () => {
  it('answers approval_not_found for another key’s approval id, as for an id that does not exist', async () => {
    const owner = await keyFor(tdb.db, { policy: 'polled' });
    const other = await keyFor(tdb.db, { policy: 'polled' });
    const { id } = await held(owner.key);
    for (const approval_id of [id, '00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      const r = await runTool(deps, other.key, 'get_approval', { approval_id });
      expect(r).toMatchObject({ ok: false, failure: { code: 'approval_not_found', retryable: false } });
      if (!r.ok) {
        expect(r.failure.vendor).toBeUndefined();
        const row = await tdb.db
          .selectFrom('audit_log')
          .select(['decision', 'reason'])
          .where('id', '=', r.failure.audit_id ?? '')
          .executeTakeFirstOrThrow();
        expect(row).toEqual({ decision: 'denied', reason: 'approval_not_found' });
      }
    }
    const mine = await runTool(deps, owner.key, 'get_approval', { approval_id: id });
    expect(mine).toMatchObject({ ok: true, output: { status: 'pending' } });
  });

  it('with wait_seconds returns as soon as an operator approves from the CLI', async () => {
    const key = await keyFor(tdb.db, { policy: 'polled' });
    const { id, args } = await held(key.key);
    const t0 = Date.now();
    const waiting = runTool(deps, key.key, 'get_approval', { approval_id: id, wait_seconds: 25 });
    await admittedWait(key.id);
    const ok = await cli(['approvals', 'approve', id, '--by', 'dana'], env);
    expect(ok.code, ok.stderr).toBe(0);
    const r = await waiting;
    expect(r).toMatchObject({ ok: true, output: { status: 'approved', approval_id: id } });
    // Long before the 25 s it was allowed to wait.
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect((await runTool(deps, key.key, 'issue_refund', args)).ok).toBe(true);
    await deps.settler.flush();
  });

  it('with wait_seconds sees a decision made by another process (another replica, psql) too', async () => {
    const key = await keyFor(tdb.db, { policy: 'polled' });
    const { id } = await held(key.key);
    const t0 = Date.now();
    const waiting = runTool(deps, key.key, 'get_approval', { approval_id: id, wait_seconds: 25 });
    await admittedWait(key.id);
    await tdb.pool.query(
      `update approvals set status = 'denied', decided_at = now(), decided_by = 'elsewhere' where id = $1`,
      [id],
    );
    expect(await waiting).toMatchObject({ ok: true, output: { status: 'denied' } });
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it('with wait_seconds answers an already decided request at once, and refuses more than 25 seconds', async () => {
    const key = await keyFor(tdb.db, { policy: 'polled' });
    const { id } = await held(key.key);
    expect((await cli(['approvals', 'deny', id], env)).code).toBe(0);
    expect(await runTool(deps, key.key, 'get_approval', { approval_id: id, wait_seconds: 25 })).toMatchObject(
      {
        ok: true,
        output: { status: 'denied' },
      },
    );
    expect(await runTool(deps, key.key, 'get_approval', { approval_id: id, wait_seconds: 26 })).toMatchObject(
      {
        ok: false,
        failure: { code: 'invalid_input' },
      },
    );
    // null means omitted (strict function calling sends it): no wait.
    expect(
      await runTool(deps, key.key, 'get_approval', { approval_id: id, wait_seconds: null }),
    ).toMatchObject({
      ok: true,
      output: { status: 'denied' },
    });
  });

  it('with wait_seconds ends when the caller goes away', async () => {
    const key = await keyFor(tdb.db, { policy: 'polled' });
    const { id } = await held(key.key);
    const abort = new AbortController();
    const t0 = Date.now();
    const waiting = runCall(deps, {
      key: key.key,
      tool: 'get_approval',
      args: { approval_id: id, wait_seconds: 25 },
      door: 'mcp',
      signal: abort.signal,
    });
    await admittedWait(key.id);
    abort.abort();
    expect(await waiting).toMatchObject({ ok: true, output: { status: 'pending' } });
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it('with wait_seconds over MCP ends when the client disconnects', async () => {
    const key = await keyFor(tdb.db, { policy: 'polled' });
    const { id } = await held(key.key);
    const client = new Client({ name: 'polling-test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${http.url}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${key.key}` } },
      }),
    );
    const call = client.callTool({ name: 'get_approval', arguments: { approval_id: id, wait_seconds: 25 } });
    call.catch(() => undefined);
    await admittedWait(key.id);
    const admitted = events.find(
      (e) => e.type === 'admitted' && e.key_id === key.id && e.tool === 'get_approval',
    );
    const auditId = admitted?.type === 'admitted' ? admitted.audit_id : 'none';
    const t0 = Date.now();
    await client.close();
    // The server's call finishes (it was allowed 25 s) once the client is gone.
    await vi.waitFor(
      () => {
        expect(events.some((e) => e.type === 'finished' && e.audit_id === auditId)).toBe(true);
      },
      { timeout: 20_000, interval: 50 },
    );
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it('with wait_seconds ends when the server closes', async () => {
    const closing = createPipeline({
      db: tdb.db,
      config: deps.config,
      catalog,
      sandbox: false,
      log: createLogger({ logLevel: 'silent' }),
      onEvent: (e) => void events.push(e),
    });
    const key = await keyFor(tdb.db, { policy: 'polled' });
    const { id } = await held(key.key);
    const t0 = Date.now();
    const waiting = runTool(closing, key.key, 'get_approval', { approval_id: id, wait_seconds: 25 });
    await admittedWait(key.id);
    closing.approvalWaits.close();
    expect(await waiting).toMatchObject({ ok: true, output: { status: 'pending' } });
    expect(Date.now() - t0).toBeLessThan(20_000);
    await closing.settler.flush();
  });

  it('with wait_seconds returns cancelled when the key is revoked while it waits', async () => {
    const key = await keyFor(tdb.db, { policy: 'polled' });
    const { id } = await held(key.key);
    const waiting = runTool(deps, key.key, 'get_approval', { approval_id: id, wait_seconds: 25 });
    await admittedWait(key.id);
    expect((await cli(['keys', 'revoke', key.id], env)).code).toBe(0);
    const r = await waiting;
    expect(r).toMatchObject({ ok: true, output: { status: 'cancelled' } });
    if (r.ok) expect(String(r.output.next)).toContain('key_revoked');
  });
});
