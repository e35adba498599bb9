// Covers the agents view's read (src/admin/agent-activity.ts) on a real database: active keys only, busiest first,
// calls per minute and denials over the last 15 minutes, the last call of a quiet key, today's spend against the
// per-key and policy caps from the budget windows, and a plan that reads the window by index, not the whole log.
import { CompiledQuery } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { activityQuery, agentActivity } from '../../src/admin/agent-activity.js';
import { uuidv7 } from '../../src/audit/uuid.js';
import { databaseNow } from '../../src/db/clock.js';
import type { Db } from '../../src/db/database.js';
import type { Decision } from '../../src/db/schema.js';
import { revokeKeys } from '../../src/keys/vault-keys.js';
import { runTool, type PipelineDeps } from '../../src/pipeline/run-tool.js';
import { catalog } from '../../tools/index.js';
import { freshDatabase, type TestDatabase } from '../support/database.js';
import { applyTestPolicy, keyFor, pipelineFor, testConfig } from '../support/governance.js';
import { startVendors, type Vendors } from '../support/vendors.js';

let tdb: TestDatabase;
let vendors: Vendors;
let deps: PipelineDeps;

beforeAll(async () => {
  tdb = await freshDatabase(4);
  vendors = await startVendors();
  deps = pipelineFor(tdb.db, catalog, testConfig(vendors.env));
  await applyTestPolicy(tdb.db, catalog, {
    name: 'texts',
    limits: { daily_usd: 300, per_key_daily_usd: 20 },
    tools: { send_sms: { from: '+15550001111' } },
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'uncapped',
    tools: { send_sms: { from: '+15550001111' } },
  });
});

afterAll(async () => {
  await vendors?.close();
  await tdb?.close();
});

/** An audit row of `key` at `ts`, as the pipeline writes one (history a test cannot make happen in real time). */
async function pastCall(
  db: Db,
  key: { id: string; agent: string },
  ts: Date,
  decision: Decision = 'allowed',
) {
  await db
    .insertInto('audit_log')
    .values({
      id: uuidv7(),
      ts,
      key_id: key.id,
      agent: key.agent,
      run_id: null,
      policy: 'texts',
      policy_version: 1,
      tool: 'send_sms',
      vendor: 'twilio',
      operation: 'POST /Messages',
      account: null,
      decision,
      reason: decision === 'denied' ? 'loop_detected' : null,
      outcome: decision === 'denied' ? 'failed' : 'succeeded',
      reserved_micros: 0,
      cost_micros: decision === 'denied' ? 0 : 8300,
      cost_status: decision === 'denied' ? 'none' : 'settled',
      amount: null,
      currency: null,
      vendor_request_id: null,
      vendor_object_id: null,
      http_status: null,
      error: null,
      request: null,
      args_hash: null,
      budget: '[]',
      sandbox: false,
      latency_ms: 3,
      settled_at: null,
      metadata: '{}',
    })
    .execute();
}

const minutesAgo = (now: Date, m: number) => new Date(now.getTime() - m * 60_000);
const sms = (key: string, n: number) =>
  runTool(deps, key, 'send_sms', { to: '+15551234567', body: `hello ${n}` });

describe('the agents view read', () => {
  it('lists active keys busiest first, with calls per minute, denials, last call and spend against the caps', async () => {
    const looper = await keyFor(tdb.db, { policy: 'texts', agent: 'sms-looper', runId: 'night-run' });
    const steady = await keyFor(tdb.db, { policy: 'texts', agent: 'steady', runId: 'r-2' });
    const quiet = await keyFor(tdb.db, { policy: 'uncapped', agent: 'quiet', runId: 'r-3' });
    const idle = await keyFor(tdb.db, { policy: 'texts', agent: 'idle' });
    const revoked = await keyFor(tdb.db, { policy: 'texts', agent: 'revoked-one' });
    const expired = await keyFor(tdb.db, {
      policy: 'texts',
      agent: 'expired-one',
      expiresAt: new Date(Date.now() + 1500),
    });

    // The looper sends 12 texts now through the pipeline (real reservations in its windows).
    for (let i = 0; i < 12; i++) {
      const r = await sms(looper.key, i);
      expect(r.ok, JSON.stringify(r)).toBe(true);
    }
    await deps.settler.flush();
    const start = await databaseNow(tdb.db);
    // Steady: 2 calls a minute for 10 minutes, ending 2 minutes ago, one of them denied; quiet: one call 3 h ago.
    for (let m = 2; m < 12; m++) {
      await pastCall(tdb.db, steady, minutesAgo(start, m + 0.2));
      await pastCall(tdb.db, steady, minutesAgo(start, m + 0.5), m === 5 ? 'denied' : 'allowed');
    }
    // (A key calls only after it is made: this one was made four hours ago.)
    await tdb.db
      .updateTable('vault_keys')
      .set({ created_at: minutesAgo(start, 240) })
      .where('id', '=', quiet.id)
      .execute();
    await pastCall(tdb.db, quiet, minutesAgo(start, 180));
    await pastCall(tdb.db, revoked, minutesAgo(start, 1));
    await revokeKeys(tdb.db, { id: revoked.id });
    await expect
      .poll(() => databaseNow(tdb.db).then((t) => t.getTime()), { timeout: 10_000 })
      .toBeGreaterThan((expired.expires_at?.getTime() ?? 0) + 10);

    const now = await databaseNow(tdb.db);
    const view = await agentActivity(tdb.db, now);
    // Other tests' keys may be listed too (any order of tests): these are this test's.
    const mine = new Set([looper, steady, quiet, idle, revoked, expired].map((k) => k.id));
    const rows = view.rows.filter((r) => mine.has(r.key_id));
    expect(view.rows[0]?.key_id).toBe(looper.id);
    expect(rows.map((r) => r.agent)).toEqual(['sms-looper', 'steady', 'idle', 'quiet']);
    expect(view.active_keys).toBeGreaterThanOrEqual(4);
    // Keys without calls in the window: the newest key first.
    const [top, second, fourth, third] = rows;

    expect(top).toMatchObject({ key_id: looper.id, run_id: 'night-run', calls: 12, denied: 0 });
    expect(top?.per_minute).toHaveLength(15);
    expect(top?.per_minute.at(-1)).toBe(12);
    expect(top?.per_minute.slice(0, -1).every((n) => n === 0)).toBe(true);
    expect(top?.last_call?.getTime()).toBeLessThanOrEqual(now.getTime());
    expect(top?.last_call?.getTime()).toBeGreaterThan(minutesAgo(now, 1).getTime());
    // Spend from the budget windows: the looper's own cap ($20) and its policy's ($300).
    expect(top?.key_cap_micros).toBe(20_000_000);
    expect(top?.policy_cap_micros).toBe(300_000_000);
    expect(top?.key_held_micros).toBeGreaterThan(0);
    expect(top?.policy_held_micros).toBe(top?.key_held_micros);

    // 20 calls 2.2 to 11.5 minutes back: none in the last two minutes, at most two in any one.
    expect(second).toMatchObject({ key_id: steady.id, calls: 20, denied: 1, key_held_micros: 0 });
    expect(second?.per_minute.reduce((a, b) => a + b, 0)).toBe(20);
    expect(second?.per_minute.slice(-2)).toEqual([0, 0]);
    expect(Math.max(...(second?.per_minute ?? []))).toBeLessThanOrEqual(2);

    expect(third).toMatchObject({ key_id: quiet.id, calls: 0, denied: 0 });
    expect(third?.per_minute.every((n) => n === 0)).toBe(true);
    expect(third?.last_call?.getTime()).toBe(minutesAgo(start, 180).getTime());
    // No caps in its policy: nothing to hold spend against.
    expect(third).toMatchObject({ key_cap_micros: null, key_held_micros: null, policy_cap_micros: null });

    expect(fourth).toMatchObject({ key_id: idle.id, calls: 0, last_call: null, key_held_micros: 0 });
  });

  it('answers at most the limit of rows, still counting every active key', async () => {
    await keyFor(tdb.db, { policy: 'texts', agent: 'limit-a' });
    await keyFor(tdb.db, { policy: 'texts', agent: 'limit-b' });
    await keyFor(tdb.db, { policy: 'texts', agent: 'limit-c' });
    const now = await databaseNow(tdb.db);
    const all = await agentActivity(tdb.db, now);
    const two = await agentActivity(tdb.db, now, 2);
    expect(two.rows.map((r) => r.key_id)).toEqual(all.rows.slice(0, 2).map((r) => r.key_id));
    expect(two.active_keys).toBe(all.active_keys);
    expect(all.active_keys).toBeGreaterThanOrEqual(3);
    expect(all.rows).toHaveLength(all.active_keys);
  });

  it('reads only the window of a large audit log, by index', async () => {
    // A few thousand rows over two days for 40 keys: the window holds a small part of them.
    const keys = await Promise.all(
      Array.from({ length: 40 }, (_, i) => keyFor(tdb.db, { policy: 'texts', agent: `bulk-${i}` })),
    );
    const now = await databaseNow(tdb.db);
    await tdb.db.executeQuery(
      CompiledQuery.raw(
        `insert into audit_log (id, ts, key_id, agent, policy, policy_version, tool, decision, outcome,
            reserved_micros, cost_micros, cost_status, budget, sandbox, metadata)
         select (lpad(to_hex(floor(extract(epoch from t.ts) * 1000)::bigint), 12, '0') || '7'
                 || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid,
                t.ts, k.id, k.agent, 'texts', 1,
                'send_sms', 'allowed', 'succeeded', 0, 8300, 'settled', '[]', false, '{}'
           from generate_series(1, 4000) g,
                lateral (select $1::timestamptz - make_interval(secs => g * 43) as ts) t, lateral (select (array[${keys.map((_, i) => `$${i + 2}`).join(',')}])[1 + g % 40] as id) pick
           join vault_keys k on k.id = pick.id`,
        [now, ...keys.map((k) => k.id)],
      ),
    );
    await tdb.db.executeQuery(
      CompiledQuery.raw('analyze audit_log; analyze vault_keys; analyze spend_windows'),
    );
    const compiled = activityQuery(now).compile(tdb.db);
    const explained = await tdb.db.executeQuery<{ 'QUERY PLAN': unknown }>(
      CompiledQuery.raw(`explain (format json) ${compiled.sql}`, [...compiled.parameters]),
    );
    const plan = JSON.stringify(explained.rows[0]?.['QUERY PLAN']);
    // audit_log is partitioned by month on its UUIDv7 ids (the rows above carry ids of their times, as leash's do):
    // the empty partitions (months ahead, the default) may be scanned for free; none holding rows is read whole.
    const scans = [...plan.matchAll(/"Node Type":"([^"]+)","[^}]*?"Relation Name":"(audit_log\w*)"/g)].map(
      (m) => ({ node: m[1], table: m[2] ?? '' }),
    );
    expect(scans.length, plan).toBeGreaterThan(0);
    for (const scan of scans.filter((x) => x.node === 'Seq Scan')) {
      const { rows } = await tdb.db.executeQuery<{ n: number }>(
        CompiledQuery.raw(`select count(*)::int as n from ${scan.table}`),
      );
      expect(rows[0]?.n, `${scan.table} is read whole: ${plan}`).toBe(0);
    }
    const view = await agentActivity(tdb.db, now);
    // 4,000 rows 43 s apart: 20 or 21 of them fall in the 15 minutes.
    const bulk = view.rows.filter((r) => r.agent.startsWith('bulk-'));
    expect(bulk).toHaveLength(40);
    expect(bulk.reduce((n, r) => n + r.calls, 0)).toBeGreaterThanOrEqual(20);
    expect(bulk.reduce((n, r) => n + r.calls, 0)).toBeLessThanOrEqual(21);
  });
});
