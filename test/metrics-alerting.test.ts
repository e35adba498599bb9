// Covers the metrics an operator alerts on: cap use per policy and window read from Postgres (the same on a replica
// that saw no calls), refusals per policy and code, the approval queue, a slow database that must not hang /metrics,
// and the shipped examples (Grafana dashboard, Prometheus alert rules) checked against the real exposition.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import parsePrometheus, { type PromFamily } from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { DbHandle } from '../src/db/database.js';
import type { PipelineDeps, ToolCallResult } from '../src/pipeline/run-tool.js';
import { runTool } from '../src/pipeline/run-tool.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { MAX_POLICY_SERIES } from '../src/server/metrics-database.js';
import { createMetrics, type Metrics } from '../src/server/metrics.js';
import { getBudget } from '../tools/leash/get-budget.js';
import { twilioVendor } from '../tools/twilio/client.js';
import { startTwilioFake, type TwilioFake } from '../tools/twilio/sandbox.js';
import { sendSms } from '../tools/twilio/send-sms.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, pipelineFor, settledRun, testConfig } from './support/governance.js';

const EXAMPLES = fileURLToPath(new URL('../examples', import.meta.url));
const RULES = join(EXAMPLES, 'prometheus', 'leash-alerts.yml');
const RULE_TESTS = join(EXAMPLES, 'prometheus', 'leash-alerts.test.yml');
const DASHBOARD = join(EXAMPLES, 'grafana', 'leash-dashboard.json');
const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
/** Scrapes here must read the database whatever the machine's load: the timeout is only a safety net. */
const GENEROUS_MS = 60_000;

const catalog: Catalog = {
  tools: new Map([sendSms, getBudget].map((t) => [t.name, t])),
  vendors: new Map([['twilio', twilioVendor]]),
};
const SMS = { from: '+15550001111', to_prefixes: ['+1'], max_segments: 3 };
/** One SMS segment is estimated at $0.0083: one is admitted under a $0.01 cap (83 %), a second is refused. */
const CAPPED = {
  name: 'alert-capped',
  limits: { daily_usd: 0.01, hourly_requests: 10 },
  tools: { send_sms: SMS, get_budget: {} },
};

let tdb: TestDatabase;
let replica: DbHandle;
let fake: TwilioFake;
let deps: PipelineDeps;
/** The metrics of the process that served the calls, and of a second replica (its own pool) that saw none. */
let metrics: Metrics;
let otherReplica: Metrics;
let cappedKey: string;
let heldKey: string;

beforeAll(async () => {
  tdb = await freshDatabase(6);
  replica = await tdb.openPool(2);
  fake = await startTwilioFake();
  const config = testConfig({
    TWILIO_ACCOUNT_SID: `AC${randomBytes(16).toString('hex')}`,
    TWILIO_AUTH_TOKEN: randomBytes(16).toString('hex'),
    LEASH_TWILIO_BASE_URL: fake.url,
  });
  metrics = createMetrics({ db: tdb.db, databaseTimeoutMs: GENEROUS_MS });
  otherReplica = createMetrics({ db: replica.db, databaseTimeoutMs: GENEROUS_MS });
  deps = { ...pipelineFor(tdb.db, catalog, config), onEvent: metrics.onEvent };
  await applyTestPolicy(tdb.db, catalog, CAPPED);
  await applyTestPolicy(tdb.db, catalog, {
    name: 'alert-idle',
    limits: { daily_usd: 5 },
    tools: { get_budget: {} },
  });
  await applyTestPolicy(tdb.db, catalog, { name: 'alert-uncapped', tools: { get_budget: {} } });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'alert-held',
    tools: { send_sms: { ...SMS, approval: { always: true } } },
  });
  cappedKey = (await keyFor(tdb.db, { policy: 'alert-capped' })).key;
  heldKey = (await keyFor(tdb.db, { policy: 'alert-held' })).key;
});

afterAll(async () => {
  await deps?.settler.flush();
  await replica?.close();
  await fake?.close();
  await tdb?.close();
});

const scrape = async (m: Metrics) => parsePrometheus(await m.render());
const family = (families: PromFamily[], name: string) => families.find((f) => f.name === name);

/** The value of the one sample of `name` whose labels include `labels`; undefined when there is none. */
function valueOf(
  families: PromFamily[],
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const m = family(families, name)?.metrics.find((s) =>
    Object.entries(labels).every(([k, v]) => s.labels?.[k] === v),
  );
  return m?.value === undefined ? undefined : Number(m.value);
}

function failureCode(r: ToolCallResult): string | null {
  return r.ok ? null : r.failure.code;
}

async function policyWindows(policy: string) {
  const { rows } = await tdb.pool.query<{ kind: string; spent: number; reserved: number; requests: number }>(
    `select kind, spent_micros::float8 as spent, reserved_micros::float8 as reserved, requests
       from spend_windows where scope = $1 and window_start in (date_trunc('day', now(), 'UTC'), date_trunc('hour', now(), 'UTC'))`,
    [`policy:${policy}`],
  );
  return rows;
}

describe('metrics to alert on', () => {
  // The calls the tests below look at, made once: one SMS admitted under the cap, one refused by it, one refused by
  // policy, one by a key that does not exist, and one held for a person.
  beforeAll(async () => {
    expect(
      failureCode(await settledRun(deps, cappedKey, 'send_sms', { to: '+15550000001', body: 'one' })),
    ).toBe(null);
    const sent = fake.received.length;
    expect(failureCode(await runTool(deps, cappedKey, 'send_sms', { to: '+15550000002', body: 'two' }))).toBe(
      'budget_exceeded',
    );
    expect(failureCode(await runTool(deps, cappedKey, 'send_sms', { to: '+445550000003', body: 'uk' }))).toBe(
      'recipient_not_allowed',
    );
    expect(
      failureCode(await runTool(deps, `lsk_${'a'.repeat(12)}_${'b'.repeat(52)}`, 'get_budget', {})),
    ).toBe('key_invalid');
    expect(failureCode(await runTool(deps, heldKey, 'send_sms', { to: '+15550000004', body: 'held' }))).toBe(
      'approval_required',
    );
    // No refused or held call reached the vendor.
    expect(fake.received.length).toBe(sent);
    await deps.settler.flush();
  });

  it('reports each policy cap in use per window from the database, the same on a replica that saw no calls', async () => {
    const windows = await policyWindows('alert-capped');
    const day = windows.find((w) => w.kind === 'usd_day');
    const hour = windows.find((w) => w.kind === 'requests_hour');
    expect(day && hour).toBeTruthy();
    const dayUse = (day!.spent + day!.reserved) / 10_000;
    expect(dayUse).toBeGreaterThan(0.8);
    expect(dayUse).toBeLessThanOrEqual(1);

    for (const families of [await scrape(metrics), await scrape(otherReplica)]) {
      expect(family(families, 'leash_policy_cap_used_ratio')?.type).toBe('GAUGE');
      const used = (policy: string, window: string) =>
        valueOf(families, 'leash_policy_cap_used_ratio', { policy, window });
      expect(used('alert-capped', 'usd_day')).toBeCloseTo(dayUse, 9);
      expect(used('alert-capped', 'requests_hour')).toBeCloseTo(hour!.requests / 10, 9);
      // A cap with nothing used yet is 0, not missing; a policy without caps and a window without a cap have none.
      expect(used('alert-idle', 'usd_day')).toBe(0);
      expect(used('alert-idle', 'requests_hour')).toBeUndefined();
      expect(used('alert-uncapped', 'usd_day')).toBeUndefined();
      expect(valueOf(families, 'leash_policy_spent_usd', { policy: 'alert-capped' })).toBeCloseTo(
        day!.spent / 1e6,
        9,
      );
      expect(valueOf(families, 'leash_metrics_database_up')).toBe(1);
    }
  });

  it('counts refusals per policy and code, leaving out held calls and calls with no valid key', async () => {
    const families = await scrape(metrics);
    const denials = family(families, 'leash_policy_denials_total');
    expect(denials?.type).toBe('COUNTER');
    const series = (denials?.metrics ?? []).map((m) => ({ ...m.labels, value: Number(m.value) }));
    expect(series).toEqual(
      expect.arrayContaining([
        { policy: 'alert-capped', code: 'budget_exceeded', value: 1 },
        { policy: 'alert-capped', code: 'recipient_not_allowed', value: 1 },
      ]),
    );
    expect(series).toHaveLength(2);
    // The replica that served no call counted none: refusals are counted where they happen (sum over replicas).
    expect(family(await scrape(otherReplica), 'leash_policy_denials_total')?.metrics ?? []).toEqual([]);
  });

  it('keeps the policy and code labels bounded: unknown codes count as other, policies past the limit as _other', async () => {
    const m = createMetrics({ db: tdb.db, databaseTimeoutMs: GENEROUS_MS });
    const denied = (policy: string, code: string) =>
      m.onEvent({
        type: 'denied',
        code,
        key_id: null,
        agent: null,
        policy,
        tool: 'send_sms',
        audit_id: null,
        details: {},
      });
    for (let i = 0; i < MAX_POLICY_SERIES + 50; i++) denied(`p${i}`, 'budget_exceeded');
    denied('p0', `made_up_${randomBytes(4).toString('hex')}`);
    const series = family(await scrape(m), 'leash_policy_denials_total')?.metrics ?? [];
    const policies = new Set(series.map((s) => s.labels?.policy));
    expect(policies.size).toBe(MAX_POLICY_SERIES + 1);
    expect(series.find((s) => s.labels?.policy === '_other')?.value).toBe('50');
    expect(series.find((s) => s.labels?.policy === 'p0' && s.labels.code === 'other')?.value).toBe('1');
  });

  it('reports how many approvals wait for a person and how long the oldest has waited', async () => {
    let families = await scrape(metrics);
    expect(valueOf(families, 'leash_approvals_pending')).toBe(1);
    const age = valueOf(families, 'leash_approvals_oldest_pending_seconds');
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(600);

    // Another request that has expired unused is no longer waiting; the open one was made 11 minutes ago.
    expect(failureCode(await runTool(deps, heldKey, 'send_sms', { to: '+15550000005', body: 'late' }))).toBe(
      'approval_required',
    );
    const { rows } = await tdb.pool.query<{ id: string }>(
      `select id from approvals where policy = 'alert-held' and status = 'pending' order by created_at, id`,
    );
    expect(rows).toHaveLength(2);
    const [open, late] = rows.map((r) => r.id);
    await tdb.pool.query(`update approvals set expires_at = now() - interval '1 second' where id = $1`, [
      late,
    ]);
    await tdb.pool.query(`update approvals set created_at = now() - interval '11 minutes' where id = $1`, [
      open,
    ]);

    families = await scrape(otherReplica);
    expect(valueOf(families, 'leash_approvals_pending')).toBe(1);
    const oldest = valueOf(families, 'leash_approvals_oldest_pending_seconds') ?? 0;
    expect(oldest).toBeGreaterThanOrEqual(660);
    expect(oldest).toBeLessThan(660 + GENEROUS_MS / 1000);
  });

  it('answers within its timeout when the database is stuck, with database_up 0, and cancels its query there', async () => {
    const slow = createMetrics({ db: tdb.db, databaseTimeoutMs: 300 });
    slow.onEvent({
      type: 'finished',
      tool: 'get_budget',
      audit_id: null,
      decision: 'allowed',
      code: null,
      door: 'mcp',
      ms: 1,
      admit_ms: null,
      vendor_ms: null,
    });
    const blocker = await tdb.connectSession();
    const waiting = `select count(*)::int as n from pg_locks where relation = 'approvals'::regclass and not granted`;
    try {
      await blocker.query('begin');
      await blocker.query('lock table approvals in access exclusive mode');
      // The scrape's query cannot finish while the lock is held: the answer comes from the timeout.
      const families = parsePrometheus(await slow.render());
      expect(valueOf(families, 'leash_metrics_database_up')).toBe(0);
      expect(valueOf(families, 'leash_calls_total', { tool: 'get_budget' })).toBe(1);
      // The database cancelled the query itself (statement_timeout): nothing is left waiting on the lock.
      await expect
        .poll(async () => (await blocker.query<{ n: number }>(waiting)).rows[0]?.n, { timeout: 20_000 })
        .toBe(0);
    } finally {
      await blocker.query('rollback');
      await blocker.end();
    }
    expect(valueOf(await scrape(metrics), 'leash_metrics_database_up')).toBe(1);
  });

  it('answers within its timeout when no pool connection is free, with database_up 0', async () => {
    const busy = await tdb.openPool(1);
    const held = await busy.pool.connect();
    try {
      const families = await scrape(createMetrics({ db: busy.db, databaseTimeoutMs: 300 }));
      expect(valueOf(families, 'leash_metrics_database_up')).toBe(0);
      // Answered while its read still waits for the connection (the pool would give up on its own only after 5 s).
      expect(busy.pool.waitingCount).toBe(1);
    } finally {
      held.release();
    }
    await expect.poll(() => busy.pool.waitingCount, { timeout: 20_000 }).toBe(0);
    await busy.close();
  });

  it('passes promtool check metrics with every alerting series present', async () => {
    const text = await metrics.render();
    for (const name of [
      'leash_policy_cap_used_ratio',
      'leash_policy_denials_total',
      'leash_approvals_pending',
    ])
      expect(text).toContain(`\n${name}`);
    if (!PROMTOOL) {
      console.log('promtool not installed (apt-get install prometheus): skipped `promtool check metrics`');
      return;
    }
    const checked = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${checked.stdout}${checked.stderr}`).toBe('');
    expect(checked.status).toBe(0);
  });
});

/** The metric families an expression names (histogram series named by their family). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bleash_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

describe('the examples', () => {
  let exported: Set<string>;
  beforeAll(async () => {
    exported = new Set((await scrape(metrics)).map((f) => f.name));
  });

  interface Panel {
    id: number;
    type: string;
    title: string;
    gridPos?: { x: number; y: number; w: number; h: number };
    targets?: { expr: string; refId: string }[];
  }

  it('ships a Grafana dashboard that uses only metrics leash exports, with a panel for each alerting and call metric', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
      uid: string;
      title: string;
      panels: Panel[];
      templating: { list: { name: string; type: string }[] };
    };
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource' }),
    );
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const graphs = dashboard.panels.filter((p) => p.type !== 'row');
    const named = new Map<string, string[]>();
    for (const p of graphs) {
      expect(p.gridPos, p.title).toBeDefined();
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? [])
        for (const name of metricNames(t.expr)) named.set(name, [...(named.get(name) ?? []), p.title]);
    }
    expect([...named.keys()].filter((n) => !exported.has(n))).toEqual([]);
    for (const name of [
      'leash_policy_cap_used_ratio',
      'leash_policy_denials_total',
      'leash_approvals_pending',
      'leash_approvals_oldest_pending_seconds',
      'leash_calls_total',
      'leash_call_duration_seconds',
      'leash_admission_duration_seconds',
      'leash_vendor_duration_seconds',
    ])
      expect(named.get(name), name).toBeDefined();
  });

  it('ships the two alert rules, on metrics leash exports, and promtool accepts them and their unit tests', () => {
    const rules = parseYaml(readFileSync(RULES, 'utf8')) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const alerts = rules.groups.flatMap((g) => g.rules);
    expect(alerts.map((a) => a.alert).sort()).toEqual(['LeashApprovalsWaiting', 'LeashPolicyNearDailyCap']);
    expect(alerts.flatMap((a) => metricNames(a.expr)).filter((n) => !exported.has(n))).toEqual([]);
    expect(alerts.find((a) => a.alert === 'LeashPolicyNearDailyCap')?.expr).toMatch(
      /leash_policy_cap_used_ratio\{window="usd_day"\}.*> 0\.8/,
    );
    expect(alerts.find((a) => a.alert === 'LeashApprovalsWaiting')?.expr).toMatch(
      /leash_approvals_oldest_pending_seconds.*> 600/,
    );
    if (!PROMTOOL) {
      console.log(
        'promtool not installed (apt-get install prometheus): skipped `promtool check rules` and `test rules`',
      );
      return;
    }
    for (const args of [
      ['check', 'rules', RULES],
      ['test', 'rules', RULE_TESTS],
    ]) {
      const run = spawnSync(PROMTOOL, args, { encoding: 'utf8' });
      expect(run.status, `promtool ${args.join(' ')}: ${run.stdout}${run.stderr}`).toBe(0);
      expect(run.stdout).toContain('SUCCESS');
    }
  });
});
