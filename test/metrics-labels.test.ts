// Covers bounded metric labels and audit tools: unknown MCP tool names and REST paths become `other` (the raw name
// kept in the audit row's request), failed keys are counted by reason alone, and the whole exposition (the Node.js
// process metrics included) passes `promtool check metrics`.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import parsePrometheus, { type PromFamily } from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/config/logger.js';
import { createPipeline, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { createAuthThrottle } from '../src/server/auth-throttle.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { createMetrics, metricsRoute, type Metrics } from '../src/server/metrics.js';
import { restRoutes } from '../src/server/rest.js';
import { catalog, vendorApis } from '../tools/index.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';

const ADMIN_TOKEN = 'metrics-labels-admin-token-0123456789';
let tdb: TestDatabase;

beforeAll(async () => {
  tdb = await freshDatabase(4);
});

afterAll(async () => {
  await tdb.close();
});

const family = (families: PromFamily[], name: string) => families.find((f) => f.name === name);

describe('bounded label sets', () => {
  let http: RunningHttp;
  let deps: PipelineDeps;
  let metrics: Metrics;
  let key: { id: string; key: string };
  const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
  const rand = () => randomBytes(6).toString('hex');
  /** The closed set a `tool` label or audit `tool` may take: the catalog's names, and `other`. */
  const known = new Set(['other', ...catalog.tools.keys(), ...(catalog.endpoints?.keys() ?? [])]);

  beforeAll(async () => {
    await applyTestPolicy(tdb.db, catalog, { name: 'bounded', tools: { get_budget: {} } });
    key = await keyFor(tdb.db, { policy: 'bounded' });
    deps = createPipeline({
      db: tdb.db,
      config: testConfig({ LEASH_ADMIN_TOKEN: ADMIN_TOKEN }),
      catalog,
      sandbox: true,
      log: createLogger({ logLevel: 'silent' }),
    });
    metrics = createMetrics({ db: tdb.db });
    deps.onEvent = metrics.onEvent;
    const throttle = createAuthThrottle({
      maxFailures: 1000,
      windowMs: 60_000,
      onFailure: (f) => metrics.authFailed(f),
    });
    http = await startHttpServer(deps, {
      host: '127.0.0.1',
      port: 0,
      routes: [
        metricsRoute(metrics, { db: tdb.db, adminToken: ADMIN_TOKEN, throttle }),
        restRoutes(deps, { apis: vendorApis, throttle }),
      ],
      throttle,
    });
  });

  afterAll(async () => {
    await http?.close();
    await deps?.settler.flush();
  });

  async function exposition(): Promise<string> {
    const res = await fetch(`${http.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(res.status).toBe(200);
    return res.text();
  }

  it('keeps tool labels and audit tools to the catalog plus other, and counts failed keys by reason alone', async () => {
    const client = new Client({ name: 'bounded', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${http.url}/mcp`), {
        requestInit: { headers: { Authorization: `Bearer ${key.key}` } },
      }),
    );
    const names = Array.from({ length: 30 }, () => `no_such_tool_${rand()}`);
    for (const name of names) await client.callTool({ name, arguments: {} }).catch(() => undefined);
    await client.close();
    const paths = Array.from({ length: 30 }, () => `/v1/made_up_${rand()}`);
    for (const path of paths) {
      const res = await fetch(`${http.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'a=1',
      });
      expect(res.status).toBeGreaterThanOrEqual(400);
    }
    for (let i = 0; i < 6; i++) {
      // Odd: well-formed but unknown (a database lookup says no); even: not a vault key's shape.
      const wrong = i % 2 ? `lsk_${'a'.repeat(11)}${i}_${'b'.repeat(52)}` : `lsk_${rand()}`;
      await fetch(`${http.url}${i < 3 ? '/mcp' : paths[i]}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${wrong}`, 'content-type': 'application/json' },
        body: '{}',
      });
    }

    const families = parsePrometheus(await exposition());
    const tools = new Set(
      families.flatMap((f) =>
        f.metrics.flatMap((m) => (m.labels?.tool === undefined ? [] : [m.labels.tool])),
      ),
    );
    expect([...tools].filter((t) => !known.has(t))).toEqual([]);
    expect(tools.has('other')).toBe(true);

    const failed = family(families, 'leash_auth_failures_total');
    expect(failed?.type).toBe('COUNTER');
    for (const m of failed?.metrics ?? [])
      expect(Object.keys(m.labels ?? {}).sort()).toEqual(['kind', 'reason']);
    const total = (failed?.metrics ?? []).reduce((n, m) => n + Number(m.value), 0);
    expect(total).toBe(6);
    expect(new Set(failed?.metrics.map((m) => m.labels?.reason))).toEqual(new Set(['malformed', 'wrong']));

    const rows = await tdb.pool.query<{ tool: string; request: { name?: string } | null }>(
      'select tool, request from audit_log where key_id = $1',
      [key.id],
    );
    expect(rows.rows.length).toBe(60);
    expect(rows.rows.filter((r) => !known.has(r.tool))).toEqual([]);
    const asked = new Set(rows.rows.map((r) => r.request?.name));
    for (const name of names) expect(asked.has(name)).toBe(true);
    for (const path of paths) expect(asked.has(`stripe:POST ${path}`)).toBe(true);
  });

  it('names no gauge like a counter, and passes promtool check metrics when promtool is installed', async () => {
    const text = await exposition();
    const gaugesNamedLikeCounters = parsePrometheus(text)
      .filter((f) => f.type !== 'COUNTER' && f.name.endsWith('_total'))
      .map((f) => f.name);
    expect(gaugesNamedLikeCounters).toEqual([]);
    if (!PROMTOOL) {
      console.log('promtool not installed (apt-get install prometheus): skipped `promtool check metrics`');
      return;
    }
    const checked = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${checked.stdout}${checked.stderr}`).toBe('');
    expect(checked.status).toBe(0);
  });
});
