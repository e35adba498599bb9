// Covers `leash serve` metrics: /metrics behind the admin token and on --metrics-port, Prometheus text that parses,
// a denied call counted by tool and code, latency histograms, database gauges, and one JSON log line per call.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import parsePrometheus, { type PromFamily } from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childEnv, LEASH_BIN } from './support/cli.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { cli } from './support/run-cli.js';

const ADMIN_TOKEN = 'metrics-admin-token-0123456789abcdef';
let tdb: TestDatabase;
let home: string;
let serve: ChildProcess;
let started: { url: string; mcp_url: string; metrics_url: string };
let stderr = '';
let vaultKey: string;

beforeAll(async () => {
  tdb = await freshDatabase(2);
  home = await mkdtemp(join(tmpdir(), 'leash-metrics-'));
  const env = { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' };
  const policy = join(home, 'p.yaml');
  await writeFile(policy, 'name: metered\nlimits: { daily_usd: 5 }\ntools:\n  get_budget: {}\n');
  expect((await cli(['policies', 'apply', policy], env)).code).toBe(0);
  const key = await cli(
    ['keys', 'create', '--agent', 'bot', '--policy', 'metered', '--expires-in', '1h', '--json'],
    env,
  );
  vaultKey = (JSON.parse(key.stdout) as { key: string }).key;

  serve = spawn(
    process.execPath,
    [
      LEASH_BIN,
      'serve',
      '--port',
      '0',
      '--metrics-port',
      '0',
      '--sandbox',
      '--reconcile-every',
      '0',
      '--json',
    ],
    {
      env: childEnv({
        DATABASE_URL: tdb.url,
        LEASH_HOME: home,
        LEASH_LOG: 'info',
        LEASH_ADMIN_TOKEN: ADMIN_TOKEN,
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  serve.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  started = await new Promise((resolve, reject) => {
    let out = '';
    serve.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.trimEnd().endsWith('}')) resolve(JSON.parse(out) as typeof started);
    });
    serve.on('exit', (code) => reject(new Error(`leash serve exited ${String(code)}: ${stderr}`)));
  });
});

afterAll(async () => {
  if (serve?.exitCode === null) {
    const exited = new Promise((r) => serve.once('exit', r));
    serve.kill('SIGTERM');
    await exited;
  }
  await tdb.close();
  await rm(home, { recursive: true, force: true });
});

async function scrape(url: string, token?: string): Promise<PromFamily[]> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return parsePrometheus(await res.text());
}

const family = (families: PromFamily[], name: string) => families.find((f) => f.name === name);

describe('leash serve metrics', () => {
  // The two calls every test here looks at (in its metrics or its log), made before any of them, in any order.
  let denied: Awaited<ReturnType<Client['callTool']>>;
  let allowed: Awaited<ReturnType<Client['callTool']>>;
  beforeAll(async () => {
    const client = new Client({ name: 'metrics-test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(started.mcp_url), {
        requestInit: { headers: { Authorization: `Bearer ${vaultKey}` } },
      }),
    );
    denied = await client.callTool({ name: 'send_sms', arguments: { to: '+15555550123', body: 'hi' } });
    allowed = await client.callTool({ name: 'get_budget', arguments: {} });
    await client.close();
  });

  it('counts a denied call by tool, decision and code, with latency histograms and database gauges', async () => {
    expect(denied.isError).toBe(true);
    expect(allowed.isError).toBeFalsy();

    const families = await scrape(`${started.url}/metrics`, ADMIN_TOKEN);
    const calls = family(families, 'leash_calls_total');
    expect(calls?.type).toBe('COUNTER');
    const deniedSample = calls?.metrics.find((m) => m.labels?.decision === 'denied');
    expect(deniedSample?.labels).toMatchObject({ tool: 'send_sms', door: 'mcp' });
    expect(deniedSample?.labels?.code).toMatch(/tool_not_allowed|unknown_tool/);
    expect(Number(deniedSample?.value)).toBe(1);
    const allowedSample = calls?.metrics.find((m) => m.labels?.decision === 'allowed');
    expect(allowedSample).toMatchObject({ labels: { tool: 'get_budget', code: 'none' }, value: '1' });
    expect(family(families, 'leash_admission_duration_seconds')?.type).toBe('HISTOGRAM');
    expect(family(families, 'leash_vendor_duration_seconds')?.type).toBe('HISTOGRAM');
    // Every call lands in the +Inf bucket (the parser keeps buckets, not _count, for labelled histograms).
    expect(family(families, 'leash_call_duration_seconds')?.metrics[0]?.buckets?.['+Inf']).toBe('2');
    // Settles are written off the answer path, so the allowed call may still count as unsettled here.
    expect(Number(family(families, 'leash_unsettled_rows')?.metrics[0]?.value)).toBeLessThanOrEqual(1);
    expect(family(families, 'leash_metrics_database_up')?.metrics[0]?.value).toBe('1');
    expect(family(families, 'leash_alert_deliveries_failed_total')?.metrics[0]?.value).toBe('0');
    expect(family(families, 'leash_policy_spent_usd')).toBeDefined();
  });

  it('serves /metrics only with the admin token on the main port, and without one on the loopback metrics port', async () => {
    expect((await fetch(`${started.url}/metrics`)).status).toBe(401);
    expect(
      (await fetch(`${started.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status,
    ).toBe(401);
    expect(started.metrics_url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const separate = await scrape(started.metrics_url);
    expect(family(separate, 'leash_calls_total')?.metrics.length).toBeGreaterThan(0);
  });

  it('writes one JSON log line per call on stderr at LEASH_LOG=info', () => {
    const lines = stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === 'call');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 'info', tool: 'send_sms', decision: 'denied', door: 'mcp' });
    expect(typeof lines[0]?.audit_id).toBe('string');
    expect(typeof lines[0]?.ms).toBe('number');
    expect(lines[1]).toMatchObject({ tool: 'get_budget', decision: 'allowed' });
  });
});
