// Covers the operator surface end to end: the kill switch under load (revoke from another process),
// the admin HTTP API, and webhook alerts that never slow tool calls.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlerts, type Alerts } from '../src/admin/alerts.js';
import { adminRoutes } from '../src/admin/routes.js';
import { createLogger } from '../src/config/logger.js';
import { createPipeline, runTool, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { catalog } from '../tools/index.js';
import { childEnv, runLeash } from './support/cli.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { sendJson, startRecordingServer, type RecordingServer } from '../src/vendor-kit/fake-server.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';
import { startVendors, type Vendors } from './support/vendors.js';

const ADMIN_TOKEN = 'admin-token-for-tests-0123456789abcdef';
let tdb: TestDatabase;
let vendors: Vendors;
let deps: PipelineDeps;
let http: RunningHttp;

beforeAll(async () => {
  tdb = await freshDatabase(16);
  vendors = await startVendors();
  const config = testConfig({ ...vendors.env, LEASH_ADMIN_TOKEN: ADMIN_TOKEN });
  deps = createPipeline({
    db: tdb.db,
    config,
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'silent' }),
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'ops',
    tools: { send_sms: { from: '+15550001111' }, get_budget: {} },
  });
  http = await startHttpServer(deps, { host: '127.0.0.1', port: 0, routes: [adminRoutes(deps, config)] });
});

afterAll(async () => {
  await http.close();
  await vendors.close();
  await tdb.close();
});

async function mcpClient(key: string) {
  const client = new Client({ name: 'agent-loop', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${http.url}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

describe('kill switch', () => {
  it('admits zero calls after `leash keys revoke` (another process) returns, while an agent loop runs flat out', async () => {
    const key = await keyFor(tdb.db, { policy: 'ops', agent: 'runaway', runId: 'loop-1' });
    const clients = await Promise.all([1, 2, 3, 4].map(() => mcpClient(key.key)));
    let revokedAt = Infinity;
    let stop = false;
    const calls: { sentAt: number; ok: boolean; code: unknown }[] = [];
    let n = 0;
    const loops = clients.map(async (c) => {
      while (!stop) {
        const sentAt = performance.now();
        const r = (await c.callTool({
          name: 'send_sms',
          arguments: { to: '+15551230000', body: `msg ${n++}` },
        })) as CallToolResult;
        calls.push({
          sentAt,
          ok: !r.isError,
          code: (r.structuredContent as { code?: unknown } | undefined)?.code,
        });
        // Until a call sent after the revoke returned has been answered.
        if (r.isError && sentAt >= revokedAt) stop = true;
      }
    });
    // The loop is running: calls have been allowed.
    await expect.poll(() => calls.filter((c) => c.ok).length, { timeout: 20_000 }).toBeGreaterThan(0);
    const spawnedAt = performance.now();
    const revoke = await runLeash(
      ['keys', 'revoke', key.id, '--json'],
      childEnv({ DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent' }),
    );
    revokedAt = performance.now();
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(JSON.parse(revoke.stdout)).toEqual({ revoked: [key.id] });
    await Promise.all(loops);
    await Promise.all(clients.map((c) => c.close()));

    const before = calls.filter((c) => c.sentAt < spawnedAt && c.ok).length;
    const after = calls.filter((c) => c.sentAt >= revokedAt);
    expect(before).toBeGreaterThan(0);
    expect(after.length).toBeGreaterThan(0);
    expect(after.filter((c) => c.ok)).toHaveLength(0);
    expect(new Set(after.map((c) => c.code))).toEqual(new Set(['key_revoked']));
    // The same, by the database's clock: no allowed row is newer than the revoke.
    const { rows } = await tdb.pool.query<{ n: number }>(
      `select count(*)::int as n from audit_log a join vault_keys k on k.id = a.key_id
        where a.key_id = $1 and a.decision = 'allowed' and a.ts > k.revoked_at`,
      [key.id],
    );
    expect(rows[0]?.n).toBe(0);
  });
});

describe('admin API', () => {
  const admin = (path: string, init: RequestInit = {}, token = ADMIN_TOKEN) =>
    fetch(`${http.url}${path}`, {
      ...init,
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        ...(init.headers as Record<string, string>),
      },
    });

  it('refuses a missing or wrong token, and a vault key, with 401', async () => {
    const key = await keyFor(tdb.db, { policy: 'ops' });
    for (const token of ['', 'wrong-token-wrong-token-wrong', key.key]) {
      expect((await admin('/admin/keys', {}, token)).status).toBe(401);
    }
  });

  it('revokes one key with one HTTP call, and an agent or a run by body', async () => {
    const a = await keyFor(tdb.db, { policy: 'ops', agent: 'adm-a', runId: 'adm-run' });
    const b = await keyFor(tdb.db, { policy: 'ops', agent: 'adm-b', runId: 'adm-run' });
    const c = await keyFor(tdb.db, { policy: 'ops', agent: 'adm-c', runId: 'other' });
    const one = await admin(`/admin/keys/${c.id}/revoke`, { method: 'POST' });
    expect(await one.json()).toEqual({ revoked: [c.id] });
    const r = await runTool(deps, c.key, 'get_budget', {});
    expect(r).toMatchObject({ ok: false, failure: { code: 'key_revoked' } });
    const run = await admin('/admin/revoke', {
      method: 'POST',
      body: JSON.stringify({ run_id: 'adm-run', reason: 'incident 7' }),
    });
    expect(((await run.json()) as { revoked: string[] }).revoked.sort()).toEqual([a.id, b.id].sort());
    const bad = await admin('/admin/revoke', {
      method: 'POST',
      body: JSON.stringify({ agent: 'x', run_id: 'y' }),
    });
    expect(bad.status).toBe(400);
    const keys = (await (await admin('/admin/keys?agent=adm-a')).json()) as {
      keys: { id: string; status: string; revoked_reason: string }[];
    };
    expect(keys.keys).toEqual([
      expect.objectContaining({ id: a.id, status: 'revoked', revoked_reason: 'incident 7' }),
    ]);
    expect(JSON.stringify(keys)).not.toContain(a.key.slice(17));
  });

  it('answers audit and spend queries', async () => {
    const key = await keyFor(tdb.db, { policy: 'ops', agent: 'adm-q' });
    expect((await runTool(deps, key.key, 'send_sms', { to: '+15551230001', body: 'q' })).ok).toBe(true);
    const audit = (await (await admin('/admin/audit?agent=adm-q')).json()) as {
      rows: { agent: string; tool: string }[];
    };
    expect(audit.rows).toEqual([expect.objectContaining({ agent: 'adm-q', tool: 'send_sms' })]);
    const spend = await admin('/admin/spend?by=agent');
    expect(spend.status).toBe(200);
    expect(JSON.stringify(await spend.json())).toContain('adm-q');
    expect((await admin('/admin/audit?since=yesterday-ish')).status).toBe(400);
  });
});

describe('alerts', () => {
  let hook: RecordingServer;
  let alerts: Alerts | undefined;
  let mode: 'ok' | 'hang' | 'fail' = 'ok';
  /** While set, the webhook answers nothing until it resolves. */
  let held: Promise<void> | undefined;

  beforeAll(async () => {
    hook = await startRecordingServer(async (_req, res) => {
      await held;
      if (mode === 'hang') return; // never answers
      if (mode === 'fail') return sendJson(res, 500, { error: 'down' });
      sendJson(res, 200, { ok: true });
    });
  });
  afterAll(async () => {
    await alerts?.close();
    await hook.close();
  });

  function pipelineWithAlerts(policy: string) {
    const config = testConfig({ ...vendors.env, LEASH_ALERT_WEBHOOK_URL: `${hook.url}/hook` });
    alerts = startAlerts({ config, log: createLogger({ logLevel: 'silent' }), fetchTimeoutMs: 10_000 });
    const d = createPipeline({
      db: tdb.db,
      config,
      catalog,
      sandbox: false,
      log: createLogger({ logLevel: 'silent' }),
      onEvent: alerts.onEvent,
    });
    return { d, policy };
  }

  it('posts a Slack-compatible cap-reached alert to the webhook', async () => {
    await applyTestPolicy(tdb.db, catalog, {
      name: 'capped',
      limits: { per_key_daily_usd: 0.01 },
      tools: { send_sms: { from: '+15550001111' } },
    });
    const { d } = pipelineWithAlerts('capped');
    const key = await keyFor(tdb.db, { policy: 'capped', agent: 'spender' });
    expect((await runTool(d, key.key, 'send_sms', { to: '+15551230002', body: 'one' })).ok).toBe(true);
    expect(await runTool(d, key.key, 'send_sms', { to: '+15551230002', body: 'two' })).toMatchObject({
      ok: false,
      failure: { code: 'budget_exceeded' },
    });
    await alerts?.drain(20_000);
    const body = JSON.parse(hook.received.at(-1)?.body ?? '{}') as {
      text: string;
      event: { type: string; scope: string; agent: string };
    };
    expect(body.text).toContain('cap reached');
    expect(body.event).toMatchObject({ type: 'cap_reached', scope: `key:${key.id}`, agent: 'spender' });
    await alerts?.close();
    alerts = undefined;
  });

  it.each(['hang', 'fail'] as const)('answers tool calls while the webhook is %s', async (m) => {
    mode = m;
    let release!: () => void;
    held = new Promise<void>((resolve) => (release = resolve));
    try {
      await applyTestPolicy(tdb.db, catalog, {
        name: 'capped2',
        limits: { per_key_daily_usd: 0.001 },
        tools: { send_sms: { from: '+15550001111' } },
      });
      const { d } = pipelineWithAlerts('capped2');
      const received = hook.received.length;
      // 24 calls that raise alerts while the webhook answers none of them (it hangs, or holds its failure until
      // released): they all return, because delivery never sits on the call path.
      for (let i = 0; i < 3; i++) {
        const key = await keyFor(tdb.db, { policy: 'capped2', agent: `slowhook-${m}-${i}` });
        for (let j = 0; j < 8; j++)
          await runTool(d, key.key, 'send_sms', { to: '+15551230003', body: `x${j}` });
      }
      await expect.poll(() => hook.received.length, { timeout: 20_000 }).toBeGreaterThan(received);
      release();
      if (m === 'fail') {
        // The failed delivery is retried, off the call path.
        const sent = () =>
          hook.received.slice(received).map((r) => {
            const e = (JSON.parse(r.body) as { event: { type: string; scope?: string } }).event;
            return `${e.type} ${e.scope ?? ''}`;
          });
        await expect.poll(() => sent().length - new Set(sent()).size, { timeout: 20_000 }).toBeGreaterThan(0);
      }
    } finally {
      release();
      held = undefined;
      mode = 'ok';
      await alerts?.close();
      alerts = undefined;
    }
  });
});
