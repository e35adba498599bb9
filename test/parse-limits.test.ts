// Covers request parsing on the REST and MCP doors: a refused key costs no body read, forms, queries and JSON over
// leash's limits are 400s naming the limit (with an audit row, nothing sent), and hostile bodies never stall the server.
import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/config/logger.js';
import { revokeKeys } from '../src/keys/vault-keys.js';
import { createPipeline, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { createAuthThrottle, type AuthThrottle } from '../src/server/auth-throttle.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { restRoutes } from '../src/server/rest.js';
import { catalog, vendorApis } from '../tools/index.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';
import { auditRows } from './support/rest.js';
import { startVendors, type Vendors } from './support/vendors.js';

let tdb: TestDatabase;
let vendors: Vendors;
let deps: PipelineDeps;
let http: RunningHttp;
let throttle: AuthThrottle;

/** A vault key of the right shape that was never minted. */
const MADE_UP = `lsk_${'a'.repeat(12)}_${'b'.repeat(52)}`;
/** The issue's body: one parameter repeated 24,000 times (168 KB), which held the event loop for ~28 s. */
const REPEATED = `payment_intent=pi_x&amount=1${'&m[a]=1'.repeat(24_000)}`;

beforeAll(async () => {
  tdb = await freshDatabase(8);
  vendors = await startVendors();
  deps = createPipeline({
    db: tdb.db,
    // Only Stripe and Resend are called here.
    config: testConfig(withoutTwilio(vendors.env)),
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'silent' }),
  });
  throttle = createAuthThrottle({ maxFailures: 1000, windowMs: 60_000, trustProxyHops: 0 });
  http = await startHttpServer(deps, {
    host: '127.0.0.1',
    port: 0,
    routes: [restRoutes(deps, { apis: vendorApis, throttle })],
    throttle,
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'parse-limits',
    tools: {},
    vendors: {
      stripe: { http: { 'POST /v1/refunds': {}, 'GET /v1/payment_intents/{id}': {} } },
      resend: { http: { 'POST /emails': { from: 'Support <support@acme.com>' } } },
    },
  });
}, 180_000);

afterAll(async () => {
  await http?.close();
  await vendors?.close();
  await tdb?.close();
});

beforeEach(() => vendors.reset());

const form = 'application/x-www-form-urlencoded';

function withoutTwilio(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('TWILIO_')));
}

function post(path: string, key: string, body: string, type = form) {
  return fetch(`${http.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': type },
    body,
  });
}

/** Settles with `what` after `ms`: a generous bound that turns a hang into a readable failure. */
const within = <T>(ms: number, what: string, p: Promise<T>) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms),
    ),
  ]);

/**
 * Sends the head of a POST announcing a 1 MB form body and only its first bytes, then waits for the answer: a door
 * that reads the body before the key never answers (the rest of the body never comes).
 */
function answerBeforeBody(key: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(http.port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text)?.[1];
      const whole = length ? text.length >= end + 4 + Number(length) : text.endsWith('\r\n0\r\n\r\n');
      if (end >= 0 && whole) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('error', reject);
    socket.write(
      `POST /v1/refunds HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Type: ${form}\r\nContent-Length: ${1 << 20}\r\n\r\n`,
    );
    socket.write(REPEATED.slice(0, 4096));
  });
}

describe('a key the pipeline would refuse costs no body read', () => {
  it.each([
    ['made-up', 'key_invalid'],
    ['revoked', 'key_revoked'],
    ['expired', 'key_expired'],
  ])('answers a %s key 401 %s before the body has arrived', async (kind, code) => {
    let key = MADE_UP;
    let keyId: string | undefined;
    if (kind !== 'made-up') {
      const minted = await keyFor(tdb.db, {
        policy: 'parse-limits',
        ...(kind === 'expired' ? { expiresAt: new Date(Date.now() - 1000) } : {}),
      });
      if (kind === 'revoked') await revokeKeys(tdb.db, { id: minted.id });
      key = minted.key;
      keyId = minted.id;
    }
    const failures = throttle.counts.failures;
    const text = await within(10_000, `${kind} key`, answerBeforeBody(key));
    expect(text).toMatch(/^HTTP\/1\.1 401 /);
    expect(text).toContain(`"code":"${code}"`);
    expect(vendors.requests()).toBe(0);
    if (keyId) {
      // Refused by the pipeline as before: its row, with no arguments kept.
      const rows = await auditRows(tdb.pool, keyId);
      expect(rows).toMatchObject([{ decision: 'denied', reason: code, door: 'http' }]);
    } else expect(throttle.counts.failures).toBe(failures + 1);
  });

  it('answers a made-up key’s 24,000-repeat body 401 while /healthz keeps answering', async () => {
    const valid = (await keyFor(tdb.db, { policy: 'parse-limits' })).key;
    // The server runs in this process: a stalled event loop stalls these clocks too, so each latency is read after
    // the fact and held to a bound far above a normal answer (milliseconds) and far below a stall (seconds each).
    const BOUND_MS = 10_000;
    const timed = async (send: () => Promise<Response>) => {
      const t0 = performance.now();
      const r = await send();
      const text = await r.text();
      return { status: r.status, text, ms: performance.now() - t0 };
    };
    // 16 in flight: half with a made-up key, half with a valid one (refused at the repeats limit).
    const burst = Array.from({ length: 16 }, (_, i) =>
      timed(() => post('/v1/refunds', i % 2 ? valid : MADE_UP, REPEATED)),
    );
    // Once the first answer is back the server holds the others' bodies: /healthz goes out among them.
    await within(60_000, 'the first answer', Promise.race(burst));
    const health = await within(
      60_000,
      '/healthz during the burst',
      timed(() => fetch(`${http.url}/healthz`)),
    );
    expect(health.status).toBe(200);
    expect(health.ms).toBeLessThan(BOUND_MS);
    const answers = await within(60_000, 'the burst', Promise.all(burst));
    for (const [i, a] of answers.entries()) {
      expect(a.ms).toBeLessThan(BOUND_MS);
      if (i % 2) {
        expect(a.status, a.text).toBe(400);
        expect(a.text).toContain("parameter 'm[a]' is repeated more than 100 times");
      } else expect(a.status, a.text).toBe(401);
    }
    expect(vendors.requests()).toBe(0);
  });
});

describe('over a limit with a valid key: 400 naming the limit, an audit row, nothing sent', () => {
  const params = (n: number, name: (i: number) => string) =>
    Array.from({ length: n }, (_, i) => `${name(i)}=1`).join('&');
  const refund = (extra: string) => `payment_intent=pi_x&amount=1&${extra}`;

  it.each([
    [
      'a repeated name',
      'POST',
      '/v1/refunds',
      refund(params(101, () => 'm[a]')),
      form,
      /repeated more than 100 times/,
    ],
    [
      'too many names',
      'POST',
      '/v1/refunds',
      refund(params(1001, (i) => `metadata[k${i}]`)),
      form,
      /more than 1000 parameters/,
    ],
    [
      'a long name',
      'POST',
      '/v1/refunds',
      refund(`metadata[${'k'.repeat(200)}]=1`),
      form,
      /longer than 200 characters/,
    ],
    [
      'deep brackets',
      'POST',
      '/v1/refunds',
      refund(`m${'[x]'.repeat(9)}=1`),
      form,
      /more than 8 brackets deep/,
    ],
    [
      'a repeated query name',
      'GET',
      `/v1/payment_intents/pi_x?${params(101, () => 'expand[]')}`,
      '',
      '',
      /repeated more than 100 times/,
    ],
    [
      'a wide JSON body',
      'POST',
      '/emails',
      JSON.stringify({
        from: 'Support <support@acme.com>',
        to: 'a@acme.com',
        subject: 's',
        text: 't',
        x: Array(1001).fill(1),
      }),
      'application/json',
      /more than 1000 array items and object members/,
    ],
    [
      'a deep JSON body',
      'POST',
      '/emails',
      `{"to":"a@acme.com","subject":"s","text":"t","x":${'['.repeat(65)}${']'.repeat(65)}}`,
      'application/json',
      /nests deeper than 64 arrays or objects/,
    ],
  ])('%s', async (_what, method, path, body, type, limit) => {
    const key = await keyFor(tdb.db, { policy: 'parse-limits' });
    const res = await fetch(`${http.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key.key}`, ...(method === 'POST' ? { 'content-type': type } : {}) },
      ...(method === 'POST' ? { body } : {}),
    });
    const text = await res.text();
    expect(res.status, text).toBe(400);
    expect(text).toMatch(limit);
    expect(text).toContain('invalid_input');
    expect(vendors.requests()).toBe(0);
    const rows = await auditRows(tdb.pool, key.id);
    expect(rows).toMatchObject([{ decision: 'denied', reason: 'invalid_input', door: 'http' }]);
  });

  it('still forwards a form at the limits', async () => {
    const p = vendors.stripe.addPayment({ amount: 5000 });
    const key = await keyFor(tdb.db, { policy: 'parse-limits' });
    const res = await post(
      '/v1/refunds',
      key.key,
      `payment_intent=${p.payment_intent}&amount=100&${params(40, (i) => `metadata[k${i}]`)}`,
    );
    expect(res.status, await res.text()).toBe(200);
  });
});

describe('MCP requests over the JSON limits', () => {
  it('answers a tools/call with more than 1,000 argument items 400 naming the limit, before any tool runs', async () => {
    const key = await keyFor(tdb.db, { policy: 'parse-limits' });
    const args = { to: '+15551234567', body: 'hi', x: Array(2000).fill(0) };
    const res = await fetch(`${http.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key.key}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'tools/call',
        params: { name: 'send_sms', arguments: args },
      }),
    });
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: { message: string } };
    expect(json.error.message).toMatch(/more than 1000 array items and object members/);
    expect(vendors.requests()).toBe(0);
  });
});
