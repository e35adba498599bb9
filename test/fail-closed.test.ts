// Covers fail-closed admission: with the database stopped mid-test, a call returns audit_unavailable and
// the fake vendor receives nothing. Uses its own embedded server so stopping it disturbs no other test.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DbHandle } from '../src/db/database.js';
import { destroyEmbedded, ensureEmbedded, stopEmbedded } from '../src/db/embedded.js';
import { runTool } from '../src/pipeline/run-tool.js';
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
  await handle.close();
  await fake.close();
  await destroyEmbedded(home);
  await rm(home, { recursive: true, force: true });
});

describe('fail closed', () => {
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
});
