// Covers failed HTTP authentication being limited per client address (429 + Retry-After for wrong secrets, never for right ones) and counted into one `auth_failures` alert per window, over a spawned `leash serve` and in process.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlerts } from '../src/admin/alerts.js';
import { adminRoutes } from '../src/admin/routes.js';
import { createLogger } from '../src/config/logger.js';
import type { PipelineDeps } from '../src/pipeline/run-tool.js';
import { addressKey, createAuthThrottle, type AuthFailure } from '../src/server/auth-throttle.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { restRoutes } from '../src/server/rest.js';
import { catalog, vendorApis } from '../tools/index.js';
import { sendJson, startRecordingServer, type RecordingServer } from '../src/vendor-kit/fake-server.js';
import { childEnv, LEASH_BIN } from './support/cli.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, pipelineFor, testConfig } from './support/governance.js';
import { startVendors, type Vendors } from './support/vendors.js';

const ADMIN_TOKEN = 'admin-token-for-throttle-tests-0123456789';
const WRONG_KEY = `lsk_${'a'.repeat(12)}_${'b'.repeat(43)}`;
const LIST = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} };
const base32 = (n: number) =>
  Array.from(randomBytes(n), (b) => 'abcdefghijklmnopqrstuvwxyz234567'[b % 32]).join('');

let tdb: TestDatabase;
let hook: RecordingServer;
let goodKey: string;

beforeAll(async () => {
  tdb = await freshDatabase();
  hook = await startRecordingServer((_req, res) => sendJson(res, 200, { ok: true }));
  await applyTestPolicy(tdb.db, catalog, { name: 'throttle', tools: { get_budget: {} } });
  goodKey = (await keyFor(tdb.db, { policy: 'throttle' })).key;
});

afterAll(async () => {
  await hook.close();
  await tdb.close();
});

function mcp(base: string, key: string | undefined, from?: string, body: unknown = LIST) {
  return fetch(`${base}/mcp`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(key ? { authorization: `Bearer ${key}` } : {}),
      ...(from ? { 'x-forwarded-for': from } : {}),
    },
    body: JSON.stringify(body),
  });
}

function admin(base: string, token: string | undefined, from?: string) {
  return fetch(`${base}/admin/keys`, {
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(from ? { 'x-forwarded-for': from } : {}),
    },
  });
}

/** The alerts posted to one path of the hook (each describe's server posts to its own). */
const hookEvents = (path: string) =>
  hook.received
    .filter((r) => r.path === path)
    .map((r) => (JSON.parse(r.body) as { event: { type: string } & Record<string, unknown> }).event);

describe('leash serve (spawned)', () => {
  let serve: ChildProcess;
  let base: string;

  beforeAll(async () => {
    serve = spawn(process.execPath, [LEASH_BIN, 'serve', '--port', '0', '--reconcile-every', '0'], {
      env: childEnv({
        DATABASE_URL: tdb.url,
        LEASH_HOME: '/nonexistent/leash-throttle-home',
        LEASH_LOG: 'error',
        LEASH_ADMIN_TOKEN: ADMIN_TOKEN,
        LEASH_ALERT_WEBHOOK_URL: `${hook.url}/hook`,
      }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    base = await new Promise<string>((resolve, reject) => {
      let err = '';
      serve.stderr?.on('data', (c: Buffer) => {
        err += c.toString();
        const url = /serving MCP at (\S+)\/mcp/.exec(err)?.[1];
        if (url) resolve(url);
      });
      serve.on('exit', (code) => reject(new Error(`leash serve exited ${String(code)}: ${err}`)));
    });
  });

  afterAll(async () => {
    if (serve.exitCode === null) {
      const exited = new Promise((r) => serve.once('exit', r));
      serve.kill('SIGTERM');
      await exited;
    }
  });

  it('answers wrong vault keys 429 with Retry-After after 20 a minute, still serves a right one, and raises one auth_failures alert', async () => {
    // A right key first: it must not use up any of the address's allowance.
    expect((await mcp(base, goodKey)).status).toBe(200);
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) statuses.push((await mcp(base, i % 2 ? WRONG_KEY : 'lsk_malformed')).status);
    expect(statuses.slice(0, 20)).toEqual(Array(20).fill(401));
    expect(statuses.slice(20)).toEqual(Array(40).fill(429));

    expect((await mcp(base, goodKey)).status).toBe(200);
    const blocked = await mcp(base, WRONG_KEY);
    expect(blocked.status).toBe(429);
    const retryAfter = Number(blocked.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(await blocked.json()).toMatchObject({
      jsonrpc: '2.0',
      id: null,
      error: { message: expect.stringContaining('too many failed authentication attempts') as unknown },
    });
    // The admin API shares the address's allowance and answers in its own JSON shape; its right token is served.
    expect((await admin(base, ADMIN_TOKEN)).status).toBe(200);
    const adminBlocked = await admin(base, 'wrong-token');
    expect(adminBlocked.status).toBe(429);
    expect(adminBlocked.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await adminBlocked.json()).toMatchObject({ error: expect.any(String) as unknown });

    await expect.poll(() => hookEvents('/hook').length, { timeout: 20_000 }).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 300)); // a second alert, if one were sent, would arrive by now
    const events = hookEvents('/hook').filter((e) => e.type === 'auth_failures');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: 'auth_failures',
      failures: 20,
      throttled: 30,
      addresses: 1,
      kinds: ['vault_key'],
      top: [{ address: '127.0.0.1', attempts: 50 }],
    });
  });
});

describe('in process', () => {
  let http: RunningHttp;
  let deps: PipelineDeps;
  let clock = 1_000_000;
  const failures: AuthFailure[] = [];

  beforeAll(async () => {
    const config = testConfig({ LEASH_ADMIN_TOKEN: ADMIN_TOKEN });
    deps = pipelineFor(tdb.db, catalog, config);
    const throttle = createAuthThrottle({
      maxFailures: 5,
      windowMs: 60_000,
      trustProxyHops: 1,
      now: () => clock,
      onFailure: (f) => failures.push(f),
    });
    http = await startHttpServer(deps, {
      host: '127.0.0.1',
      port: 0,
      routes: [adminRoutes(deps, config, undefined, throttle)],
      throttle,
    });
  });

  afterAll(async () => {
    await http.close();
  });

  it('never counts right keys nor refuses them, limits each address on its own, and opens again when the window ends', async () => {
    for (let i = 0; i < 30; i++) expect((await mcp(http.url, goodKey, '203.0.113.1')).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await mcp(http.url, WRONG_KEY, '203.0.113.1')).status).toBe(401);
    expect((await mcp(http.url, WRONG_KEY, '203.0.113.1')).status).toBe(429);
    expect((await mcp(http.url, goodKey, '203.0.113.1')).status).toBe(200);
    expect((await mcp(http.url, WRONG_KEY, '203.0.113.2')).status).toBe(401);
    // Requests without a key are answered 401 but are no guess, so they are not counted.
    for (let i = 0; i < 10; i++) expect((await mcp(http.url, undefined, '203.0.113.3')).status).toBe(401);
    expect((await mcp(http.url, goodKey, '203.0.113.3')).status).toBe(200);

    const retry = Number((await mcp(http.url, WRONG_KEY, '203.0.113.1')).headers.get('retry-after'));
    clock += retry * 1000;
    expect((await mcp(http.url, WRONG_KEY, '203.0.113.1')).status).toBe(401);
  });

  it('counts wrong admin tokens against the same allowance as wrong vault keys', async () => {
    const from = '198.51.100.7';
    for (let i = 0; i < 3; i++) expect((await mcp(http.url, WRONG_KEY, from)).status).toBe(401);
    expect((await admin(http.url, ADMIN_TOKEN, from)).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await admin(http.url, 'wrong-token', from)).status).toBe(401);
    expect((await admin(http.url, ADMIN_TOKEN, from)).status).toBe(200);
    const res = await admin(http.url, 'wrong-token', from);
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('60');
    expect(failures.filter((f) => f.address === from)).toEqual([
      ...Array<AuthFailure>(3).fill({
        address: from,
        kind: 'vault_key',
        reason: 'malformed',
        throttled: false,
      }),
      ...Array<AuthFailure>(2).fill({
        address: from,
        kind: 'admin_token',
        reason: 'wrong',
        throttled: false,
      }),
      { address: from, kind: 'admin_token', reason: 'wrong', throttled: true },
    ]);
  });
});

describe('addresses and alerts', () => {
  it.each([
    ['::ffff:192.0.2.4', '192.0.2.4'],
    ['192.0.2.4', '192.0.2.4'],
    ['2001:db8:0:12::1', '2001:db8:0:12::/64'],
    ['2001:0db8:0000:0012:abcd:ef01:2345:6789', '2001:db8:0:12::/64'],
    ['::1', '0:0:0:0::/64'],
  ])('counts %s as %s', (ip, key) => {
    expect(addressKey(ip)).toBe(key);
  });

  it('posts one auth_failures alert per window however many failures follow, and none below the threshold', async () => {
    const config = testConfig({ LEASH_ALERT_WEBHOOK_URL: `${hook.url}/window` });
    const alerts = startAlerts({
      config,
      log: createLogger({ logLevel: 'silent' }),
      authFailureThreshold: 10,
      authFailureWindowMs: 60_000,
    });
    try {
      const windowPosts = () => hook.received.filter((r) => r.path === '/window');
      const before = windowPosts().length;
      for (let i = 0; i < 9; i++)
        alerts.onAuthFailure({
          address: `192.0.2.${i}`,
          kind: 'admin_token',
          reason: 'wrong',
          throttled: false,
        });
      await alerts.drain(20_000);
      expect(windowPosts().length).toBe(before);
      for (let i = 0; i < 500; i++)
        alerts.onAuthFailure({ address: '192.0.2.99', kind: 'vault_key', reason: 'wrong', throttled: i > 3 });
      await alerts.drain(20_000);
      const posted = windowPosts().slice(before);
      expect(posted).toHaveLength(1);
      const body = JSON.parse(posted[0]?.body ?? '{}') as { text: string; event: Record<string, unknown> };
      expect(body.text).toContain('failed authentication attempts');
      expect(body.event).toMatchObject({
        type: 'auth_failures',
        failures: 10,
        throttled: 0,
        addresses: 10,
        kinds: ['admin_token', 'vault_key'],
      });
    } finally {
      await alerts.close();
    }
  });
});

describe('a good credential from a throttled address (in process)', () => {
  const CAP = 20;
  let http: RunningHttp;
  let deps: PipelineDeps;
  let vendors: Vendors;
  let alerts: ReturnType<typeof startAlerts>;
  let clock = 5_000_000;
  let payment: string;
  let restKey: string;
  const from = '192.0.2.50';
  /** A well-formed vault key that matches nothing: each one needs a database lookup to refuse. */
  const unknownKey = () => `lsk_${base32(12)}_${base32(52)}`;

  beforeAll(async () => {
    vendors = await startVendors();
    await applyTestPolicy(tdb.db, catalog, {
      name: 'throttle-rest',
      tools: { get_budget: {} },
      vendors: { stripe: { http: { 'GET /v1/payment_intents/{id}': {} } } },
    });
    restKey = (await keyFor(tdb.db, { policy: 'throttle-rest' })).key;
    payment = vendors.stripe.addPayment({ amount: 500 }).payment_intent;
    const config = testConfig({
      ...vendors.env,
      LEASH_ADMIN_TOKEN: ADMIN_TOKEN,
      LEASH_ALERT_WEBHOOK_URL: `${hook.url}/lockout`,
    });
    deps = pipelineFor(tdb.db, catalog, config);
    alerts = startAlerts({
      config,
      log: createLogger({ logLevel: 'silent' }),
      authFailureThreshold: CAP,
      authFailureWindowMs: 60_000,
    });
    const throttle = createAuthThrottle({
      maxFailures: CAP,
      windowMs: 60_000,
      trustProxyHops: 1,
      now: () => clock,
      onFailure: alerts.onAuthFailure,
    });
    http = await startHttpServer(deps, {
      host: '127.0.0.1',
      port: 0,
      routes: [adminRoutes(deps, config, alerts, throttle), restRoutes(deps, { apis: vendorApis, throttle })],
      throttle,
    });
  });

  afterAll(async () => {
    await http.close();
    await alerts.close();
    await vendors.close();
  });

  const restGet = (key: string) =>
    fetch(`${http.url}/v1/payment_intents/${payment}`, {
      headers: { authorization: `Bearer ${key}`, 'x-forwarded-for': from },
    });
  const lockoutAlerts = () =>
    hook.received
      .filter((r) => r.path === '/lockout')
      .map((r) => (JSON.parse(r.body) as { event: { type: string } }).event)
      .filter((e) => e.type === 'auth_failures');

  it('serves the right vault key on both doors and the admin token after 60 wrong keys, keeps refusing wrong ones with 429, and alerts once', async () => {
    // The right keys are used once first, as a running agent's would be.
    expect((await mcp(http.url, goodKey, from)).status).toBe(200);
    expect((await restGet(restKey)).status).toBe(200);
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) {
      const wrong = i % 3 === 0 ? WRONG_KEY : unknownKey();
      statuses.push((await (i % 2 ? restGet(wrong) : mcp(http.url, wrong, from))).status);
    }
    expect(statuses.slice(0, CAP)).toEqual(Array(CAP).fill(401));
    expect(statuses.slice(CAP)).toEqual(Array(60 - CAP).fill(429));

    const listed = await mcp(http.url, goodKey, from);
    expect(listed.status).toBe(200);
    expect(await listed.json()).toMatchObject({ id: 1, result: { tools: [{ name: 'get_budget' }] } });
    const rest = await restGet(restKey);
    expect(rest.status).toBe(200);
    expect(await rest.json()).toMatchObject({ id: payment });
    expect((await admin(http.url, ADMIN_TOKEN, from)).status).toBe(200);

    // Wrong secrets of every kind are still refused 429 without a check.
    expect((await mcp(http.url, unknownKey(), from)).status).toBe(429);
    expect((await restGet(WRONG_KEY)).status).toBe(429);
    expect((await admin(http.url, 'wrong-token', from)).status).toBe(429);
    expect((await mcp(http.url, goodKey, from)).status).toBe(200);

    await alerts.drain(20_000);
    const events = lockoutAlerts();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ failures: CAP, addresses: 1 });
  });

  it('still looks up a right key it has not seen, but lets a blocked address make only a trickle of lookups', async () => {
    const blocked = '192.0.2.51';
    for (let i = 0; i < CAP; i++) expect((await mcp(http.url, unknownKey(), blocked)).status).toBe(401);
    const before = deps.keys.lookups;
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await mcp(http.url, unknownKey(), blocked)).status);
    expect(statuses).toEqual(Array(40).fill(429));
    // One lookup per (window / allowance) at most while blocked: here the clock stands still, so one.
    expect(deps.keys.lookups - before).toBeLessThanOrEqual(1);

    // A key minted now is in no cache: once the trickle allows a lookup, it is served.
    const fresh = (await keyFor(tdb.db, { policy: 'throttle' })).key;
    clock += 60_000 / CAP;
    expect((await mcp(http.url, fresh, blocked)).status).toBe(200);
    // Served keys are cached: a tool call that follows needs no lookup at all (a listing reads the policy afresh).
    const after = deps.keys.lookups;
    const call = {
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'get_budget', arguments: {} },
    };
    const called = await mcp(http.url, fresh, blocked, call);
    expect(called.status).toBe(200);
    expect(await called.json()).toMatchObject({
      id: 2,
      result: { structuredContent: { audit_id: expect.any(String) as unknown } },
    });
    expect(deps.keys.lookups).toBe(after);
    // The same wrong key again and again is answered from the cache's negative entry, without the database.
    const repeated = unknownKey();
    clock += 60_000 / CAP;
    expect((await mcp(http.url, repeated, blocked)).status).toBe(429);
    const once = deps.keys.lookups;
    clock += 60_000 / CAP;
    for (let i = 0; i < 5; i++) expect((await mcp(http.url, repeated, blocked)).status).toBe(429);
    expect(deps.keys.lookups).toBe(once);
  });
});
