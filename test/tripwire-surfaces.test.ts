// Covers the operator surfaces of tripwires (issue 27) end to end against real Postgres, the real pipeline and the
// Resend fake: `leash keys pause|resume|paused` and `keys list` showing a paused key (recorded in operator_actions
// with the CLI's name), the admin API's pause/resume/pauses routes (recorded as the token's name), the
// tripwire_tripped and tripwire_alert webhook alerts with their figures, get_budget telling a paused agent to stop,
// and the trips counter and paused-scopes gauge on /metrics.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlerts, type Alerts } from '../src/admin/alerts.js';
import { adminRoutes } from '../src/admin/routes.js';
import { createLogger } from '../src/config/logger.js';
import { pause } from '../src/keys/pauses.js';
import { createPipeline, runTool, type PipelineDeps, type ToolCallResult } from '../src/pipeline/run-tool.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { createMetrics, type Metrics } from '../src/server/metrics.js';
import { sendJson, startRecordingServer, type RecordingServer } from '../src/vendor-kit/fake-server.js';
import { catalog } from '../tools/index.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';
import { cli } from './support/run-cli.js';
import { startVendors, type Vendors } from './support/vendors.js';

const ADMIN_TOKEN = 'tripwire-surfaces-admin-token-0123456789';
const EMAIL = { from: 'Support <support@acme.com>', to_domains: ['acme.com'] };

let tdb: TestDatabase;
let vendors: Vendors;
let deps: PipelineDeps;
let hook: RecordingServer;
let alerts: Alerts;
let metrics: Metrics;
let http: RunningHttp;
let env: Record<string, string>;

const leash = (argv: string[], extra: Record<string, string> = {}) => cli(argv, { ...env, ...extra });
const code = (r: ToolCallResult) => (r.ok ? 'ok' : r.failure.code);
let mailSerial = 0;
const email = () => ({ to: [`pat${++mailSerial}@acme.com`], subject: 'order', text: 'Your order shipped.' });
const alertEvents = () =>
  hook.received.map((r) => (JSON.parse(r.body) as { event: Record<string, unknown>; text: string }).event);
const alertTexts = () => hook.received.map((r) => (JSON.parse(r.body) as { text: string }).text);

let serial = 0;
async function policy(tripwires: unknown[] = []) {
  const name = `surf-${++serial}`;
  await applyTestPolicy(tdb.db, catalog, { name, tools: { send_email: EMAIL, get_budget: {} }, tripwires });
  return name;
}

function admin(method: string, path: string, body?: unknown) {
  return fetch(`${http.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

const actions = async (target: string) =>
  (
    await tdb.pool.query<{ actor: string; via: string; action: string; detail: Record<string, unknown> }>(
      'select actor, via, action, detail from operator_actions where target = $1 order by id',
      [target],
    )
  ).rows;

beforeAll(async () => {
  tdb = await freshDatabase(8);
  vendors = await startVendors();
  hook = await startRecordingServer((_req, res) => sendJson(res, 200, { ok: true }));
  env = { DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent/leash-test-home', LEASH_LOG: 'silent' };
  const config = testConfig({
    ...vendors.env,
    LEASH_ADMIN_TOKEN: ADMIN_TOKEN,
    LEASH_ALERT_WEBHOOK_URL: `${hook.url}/hook`,
  });
  const log = createLogger({ logLevel: 'silent' }, () => undefined);
  alerts = startAlerts({ config, log, fetchTimeoutMs: 10_000 });
  metrics = createMetrics({ db: tdb.db });
  deps = createPipeline({ db: tdb.db, config, catalog, sandbox: false, log });
  deps.onEvent = (e) => {
    alerts.onEvent(e);
    metrics.onEvent(e);
  };
  http = await startHttpServer(deps, {
    host: '127.0.0.1',
    port: 0,
    routes: [adminRoutes(deps, config, alerts)],
  });
});

afterAll(async () => {
  await deps.settler.flush();
  await http.close();
  await alerts.close();
  await hook.close();
  await vendors.close();
  await tdb.close();
});

describe('leash keys pause | resume | paused', () => {
  it('pauses a key with a reason as the named operator; list shows paused; resume lets the next call go', async () => {
    const name = await policy();
    const k = await keyFor(tdb.db, { policy: name, agent: 'cli-agent', runId: 'cli-run' });
    expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('ok');

    const p = await leash(['keys', 'pause', k.id, '--reason', 'incident 7', '--by', 'alice', '--json']);
    expect(p.code).toBe(0);
    const paused = JSON.parse(p.stdout) as { paused: boolean; pause: Record<string, unknown> };
    expect(paused.paused).toBe(true);
    expect(paused.pause).toMatchObject({
      scope_kind: 'key',
      scope: k.id,
      wire: null,
      reason: 'incident 7',
      paused_by: 'alice',
    });
    expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('key_paused');

    // Pausing again changes nothing and says so.
    const again = await leash(['keys', 'pause', k.id, '--by', 'bob']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already paused .* by alice/);

    const list = JSON.parse((await leash(['keys', 'list', '--agent', 'cli-agent', '--json'])).stdout) as {
      id: string;
      status: string;
      pause: { scope_kind: string; scope: string } | null;
    }[];
    expect(list.find((r) => r.id === k.id)).toMatchObject({
      status: 'paused',
      pause: { scope_kind: 'key', scope: k.id },
    });
    const table = await leash(['keys', 'list', '--agent', 'cli-agent']);
    expect(table.stdout).toMatch(new RegExp(`${k.id}.*paused`));

    const all = JSON.parse((await leash(['keys', 'paused', '--json'])).stdout) as Record<string, unknown>[];
    expect(all).toContainEqual(
      expect.objectContaining({ scope_kind: 'key', scope: k.id, paused_by: 'alice' }),
    );
    const pausedTable = await leash(['keys', 'paused'], { COLUMNS: '80' });
    expect(pausedTable.stdout).toContain(k.id);
    expect(pausedTable.stdout).toContain('operator: incident 7');
    for (const line of pausedTable.stdout.trimEnd().split('\n')) expect(line.length).toBeLessThanOrEqual(80);

    const r = await leash(['keys', 'resume', k.id, '--by', 'carol', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      resumed: true,
      pause: { resumed_by: 'carol', paused_by: 'alice' },
    });
    expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('ok');

    expect(await actions(`key:${k.id}`)).toEqual([
      { actor: 'alice', via: 'cli', action: 'key.pause', detail: { keys: 1, reason: 'incident 7' } },
      { actor: 'carol', via: 'cli', action: 'key.resume', detail: {} },
    ]);
    // Resuming what is not paused is "not found".
    expect((await leash(['keys', 'resume', k.id])).code).toBe(3);
  });

  it('pauses a run, an agent and a policy; every key of it is refused until resumed', async () => {
    const name = await policy();
    const k1 = await keyFor(tdb.db, { policy: name, agent: 'scoped-agent', runId: 'scoped-run' });
    const k2 = await keyFor(tdb.db, { policy: name, agent: 'scoped-agent', runId: 'other-run' });
    for (const [flag, value, refused] of [
      ['--run', 'scoped-run', [k1]],
      ['--agent', 'scoped-agent', [k1, k2]],
      ['--policy', name, [k1, k2]],
    ] as const) {
      expect((await leash(['keys', 'pause', flag, value])).code).toBe(0);
      for (const k of [k1, k2])
        expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe(
          (refused as readonly { id: string }[]).includes(k) ? 'key_paused' : 'ok',
        );
      const res = await leash(['keys', 'resume', flag, value]);
      expect(res.code).toBe(0);
      expect(res.stdout).toContain(`resumed ${flag.slice(2)} ${value}`);
      for (const k of [k1, k2]) expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('ok');
    }
  });

  it('refuses bad input with usage errors naming what is wrong, and an unknown key as not found', async () => {
    const none = await leash(['keys', 'pause']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('exactly one of <id>, --run, --agent or --policy');
    expect((await leash(['keys', 'pause', '--run', 'r', '--agent', 'a'])).code).toBe(2);
    const shape = await leash(['keys', 'pause', 'NOT-A-KEY']);
    expect(shape.code).toBe(2);
    expect(shape.stderr).toContain('key id must be');
    expect(shape.stderr).not.toMatch(/\n\s+at /);
    const unknown = await leash(['keys', 'pause', 'aaaaaaaaaaaa']);
    expect(unknown.code).toBe(3);
    expect((await leash(['keys', 'pause', '--agent', 'x', '--reason', 'r'.repeat(501)])).code).toBe(2);
    for (const c of ['pause', 'resume', 'paused']) {
      const h = await leash(['keys', c, '--help']);
      expect(h.code).toBe(0);
      expect(h.stdout).toContain(`keys ${c}`);
    }
  });
});

describe('admin API pause, resume and pauses', () => {
  it('pauses and resumes a key and an agent, lists pauses, marks keys paused, records admin, alerts', async () => {
    const name = await policy();
    const k = await keyFor(tdb.db, { policy: name, agent: 'api-agent', runId: 'api-run' });
    const p = await admin('POST', `/admin/keys/${k.id}/pause`, { reason: 'looks odd' });
    expect(p.status).toBe(200);
    expect(await p.json()).toMatchObject({
      paused: true,
      pause: { scope_kind: 'key', scope: k.id, paused_by: 'admin' },
    });
    expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('key_paused');

    const keys = (await (await admin('GET', '/admin/keys?agent=api-agent')).json()) as {
      keys: { id: string; status: string }[];
    };
    expect(keys.keys.find((r) => r.id === k.id)?.status).toBe('paused');
    const pauses = (await (await admin('GET', '/admin/pauses')).json()) as {
      pauses: Record<string, unknown>[];
    };
    expect(pauses.pauses).toContainEqual(expect.objectContaining({ scope: k.id, reason: 'looks odd' }));

    const r = await admin('POST', `/admin/keys/${k.id}/resume`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ resumed: true, pause: { resumed_by: 'admin' } });
    expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('ok');
    const again = await admin('POST', `/admin/keys/${k.id}/resume`);
    expect(await again.json()).toEqual({ resumed: false, pause: null });

    expect((await admin('POST', '/admin/pause', { agent: 'api-agent' })).status).toBe(200);
    expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('key_paused');
    expect((await admin('POST', '/admin/resume', { agent: 'api-agent' })).status).toBe(200);
    expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('ok');

    expect((await actions(`key:${k.id}`)).map((a) => `${a.actor} ${a.via} ${a.action}`)).toEqual([
      'admin admin_api key.pause',
      'admin admin_api key.resume',
    ]);
    await alerts.drain();
    expect(alertEvents()).toContainEqual(
      expect.objectContaining({
        type: 'operator_action',
        action: 'key.pause',
        target: 'agent:api-agent',
        by: 'admin',
      }),
    );
  });

  it('answers bad bodies 400 naming the field and an unknown key 404', async () => {
    const two = await admin('POST', '/admin/pause', { agent: 'a', run_id: 'r' });
    expect(two.status).toBe(400);
    expect(await two.text()).toContain('exactly one of key_id, run_id, agent or policy');
    const extra = await admin('POST', '/admin/pause', { agent: 'a', nope: 1 });
    expect(extra.status).toBe(400);
    expect(await extra.text()).toContain('nope');
    const shape = await admin('POST', '/admin/pause', { policy: 'Bad Policy!' });
    expect(shape.status).toBe(400);
    expect(await shape.text()).toContain('policy must be');
    const long = await admin('POST', '/admin/keys/aaaaaaaaaaaa/pause', { reason: 'x'.repeat(501) });
    expect(long.status).toBe(400);
    expect((await admin('POST', '/admin/keys/aaaaaaaaaaaa/pause')).status).toBe(404);
    expect((await admin('POST', '/admin/keys/NOTAKEY/pause')).status).toBe(400);
  });
});

describe('a wire that trips: alert, get_budget, metrics', () => {
  it('alerts tripwire_tripped once with the figures, tells get_budget it is paused, counts the trip and the pause', async () => {
    const name = await policy([{ name: 'burst', when: { calls_per_minute: 2 }, then: 'pause' }]);
    const k = await keyFor(tdb.db, { policy: name, agent: 'wire-agent', runId: 'wire-run' });
    const before = await runTool(deps, k.key, 'get_budget', {});
    expect(before.ok && (before.output as { paused: unknown }).paused).toBeNull();

    const codes = [];
    for (let i = 0; i < 4; i++) codes.push(code(await runTool(deps, k.key, 'send_email', email())));
    expect(codes).toEqual(['ok', 'ok', 'tripwire_tripped', 'key_paused']);

    await alerts.drain();
    const trips = alertEvents().filter((e) => e.type === 'tripwire_tripped' && e.key_id === k.id);
    expect(trips).toHaveLength(1);
    expect(trips[0]).toMatchObject({
      wire: 'burst',
      policy: name,
      metric: 'calls_per_minute',
      figure: 3,
      limit: 2,
      window_seconds: 60,
      scope_kind: 'key',
      scope: k.id,
      mode: 'enforce',
      action: 'pause',
    });
    expect(alertTexts().find((t) => t.includes("tripwire 'burst'"))).toContain(`leash keys resume ${k.id}`);

    // Every call of a paused key is refused key_paused, except leash's own lookups: get_budget answers, saying it is
    // paused, why, and that only an operator can resume it.
    expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('key_paused');
    const during = await runTool(deps, k.key, 'get_budget', {});
    if (!during.ok) throw new Error(`get_budget on a paused key was refused: ${during.failure.code}`);
    const out = during.output as { paused: Record<string, unknown> | null; summary: string };
    expect(out.paused).toMatchObject({
      scope_kind: 'key',
      scope: k.id,
      wire: 'burst',
      metric: 'calls_per_minute',
      figure: 3,
      limit: 2,
    });
    expect(String(out.paused?.paused_by)).toMatch(/\S/);
    expect(out.summary).toMatch(/PAUSED.*tripwire 'burst'.*only an operator can resume it/);
    expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('key_paused');

    const text = await metrics.render();
    expect(text).toContain(
      `leash_tripwire_trips_total{policy="${name}",wire="burst",then="pause",mode="enforce"} 1`,
    );
    expect(text).toMatch(/leash_paused_scopes\{scope_kind="key"\} [1-9]/);
    await pause(tdb.db, { kind: 'policy', id: name }, 'test');
    expect(await metrics.render()).toMatch(/leash_paused_scopes\{scope_kind="policy"\} [1-9]/);
  });

  it('alerts tripwire_alert for then: alert and admits the call', async () => {
    const name = await policy([{ name: 'watch', when: { calls_per_minute: 1 }, then: 'alert' }]);
    const k = await keyFor(tdb.db, { policy: name, agent: 'watch-agent', runId: 'watch-run' });
    for (let i = 0; i < 3; i++) expect(code(await runTool(deps, k.key, 'send_email', email()))).toBe('ok');
    await alerts.drain();
    const raised = alertEvents().filter((e) => e.key_id === k.id && String(e.type).startsWith('tripwire'));
    expect(raised).toEqual([
      expect.objectContaining({
        type: 'tripwire_alert',
        wire: 'watch',
        figure: 2,
        limit: 1,
        action: 'alert',
      }),
    ]);
    expect(await metrics.render()).toContain(
      `leash_tripwire_trips_total{policy="${name}",wire="watch",then="alert",mode="enforce"} 1`,
    );
  });
});
