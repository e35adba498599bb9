// Covers fail-closed admission: with the database stopped mid-test, a call returns audit_unavailable and
// the fake vendor receives nothing, also over MCP-over-HTTP for a key the server has never seen (a tool result with
// the request's id, not a transport error). Uses its own embedded server so stopping it disturbs no other test.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../src/db/database.js';
import { destroyEmbedded, ensureEmbedded, stopEmbedded } from '../src/db/embedded.js';
import { runTool } from '../src/pipeline/run-tool.js';
import { startHttpServer } from '../src/server/http.js';
import { startFakeVendor, testCatalog, type FakeVendor } from './fakes/test-tool.js';
import { applyTestPolicy, keyFor, pipelineFor, testConfig } from './support/governance.js';

let home: string;
let handle: DbHandle;
let fake: FakeVendor;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'leash-failclosed-'));
  const server = await ensureEmbedded(home);
  handle = await openDatabase(testConfig(), { url: server.url, poolMax: 4 });
  fake = await startFakeVendor();
});

afterAll(async () => {
  // Guarded: when beforeAll failed half-way, the cluster must still be destroyed.
  await handle?.close();
  await fake?.close();
  await destroyEmbedded(home);
  await rm(home, { recursive: true, force: true });
});

describe('fail closed', () => {
  // Each test stops the database; each starts from a running one (ensureEmbedded reuses it when it is up).
  beforeEach(async () => {
    await ensureEmbedded(home);
    fake.received.length = 0;
  });

  it('returns audit_unavailable and never calls the vendor when the database goes away', async () => {
    const deps = pipelineFor(handle.db, testCatalog(fake));
    await applyTestPolicy(handle.db, deps.catalog, {
      name: 'p',
      limits: { daily_usd: 100 },
      tools: { charge_test: null },
    });
    const key = await keyFor(handle.db, { policy: 'p' });
    const ok = await runTool(deps, key.key, 'charge_test', { amount_cents: 100, customer: 'cus_A' });
    expect(ok.ok).toBe(true);
    expect(fake.received).toHaveLength(1);

    await stopEmbedded(home);
    fake.received.length = 0;
    const r = await runTool(deps, key.key, 'charge_test', { amount_cents: 200, customer: 'cus_A' });
    expect(r).toMatchObject({
      ok: false,
      // Nothing was done, so the same call may succeed once the database is back.
      failure: { code: 'audit_unavailable', retryable: true, audit_id: null },
    });
    if (!r.ok) expect(r.failure.message).toContain('not made');
    expect(fake.received).toHaveLength(0);
  });

  it('answers an MCP-over-HTTP call from a key the server has not cached with the audit_unavailable result and its id', async () => {
    const deps = pipelineFor(handle.db, testCatalog(fake));
    await applyTestPolicy(handle.db, deps.catalog, { name: 'p2', tools: { charge_test: null } });
    const key = await keyFor(handle.db, { policy: 'p2' });
    const http = await startHttpServer(deps, { host: '127.0.0.1', port: 0 });
    try {
      await stopEmbedded(home);
      fake.received.length = 0;
      const post = (id: number, method: string, params: unknown) =>
        fetch(`${http.url}/mcp`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${key.key}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
          },
          body: JSON.stringify({ jsonrpc: '2.0', id, method, params }),
        });
      const called = await post(41, 'tools/call', {
        name: 'charge_test',
        arguments: { amount_cents: 100, customer: 'cus_A' },
      });
      expect(called.status).toBe(200);
      expect(await called.json()).toMatchObject({
        jsonrpc: '2.0',
        id: 41,
        result: {
          isError: true,
          structuredContent: { code: 'audit_unavailable', retryable: true, audit_id: null },
        },
      });
      // A listing cannot be a tool result: it is a JSON-RPC error, still with the request's id.
      const listed = await post(42, 'tools/list', {});
      expect(await listed.json()).toMatchObject({
        jsonrpc: '2.0',
        id: 42,
        error: { code: -32603, message: expect.stringContaining('audit_unavailable') as unknown },
      });
      expect(fake.received).toHaveLength(0);
    } finally {
      await http.close();
    }
  });
});
