// Covers issue 23 item 4: a vendor's 429 tells the caller when to come back. Its Retry-After reaches the REST door's
// caller as the HTTP header (Stripe, Twilio, Resend, through their SDKs), and the MCP caller as retry_after_seconds
// in the refusal's details and in its text; nothing was done, so nothing is held.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { retryAfterSeconds } from '../src/pipeline/errors.js';
import {
  AGENT_SID,
  callOnce,
  startFaultBench,
  POLICY,
  type Door,
  type FaultBench,
  type Vendor,
} from './support/faults.js';
import { keyFor } from './support/governance.js';
import { auditRows, keySpend } from './support/rest.js';

let bench: FaultBench;

beforeAll(async () => {
  bench = await startFaultBench({ timeoutMs: 10_000 });
}, 180_000);

afterAll(async () => {
  await bench?.close();
});

beforeEach(() => {
  for (const fake of [bench.stripe, bench.twilio, bench.resend]) fake.received.length = 0;
});

const fakes = (v: Vendor) => (v === 'stripe' ? bench.stripe : v === 'twilio' ? bench.twilio : bench.resend);

const cells: [Vendor, Door][] = [
  ['stripe', 'rest'],
  ['resend', 'rest'],
  ['stripe', 'mcp'],
  ['twilio', 'mcp'],
  ['resend', 'mcp'],
];

describe('a vendor 429 with Retry-After', () => {
  it.each(cells)(
    '%s through the %s door: the caller gets the wait (17 s), nothing is done and nothing is held',
    async (vendor, door) => {
      const key = await keyFor(bench.tdb.db, { policy: POLICY });
      const applied = fakes(vendor).inject({ mode: 'rate_limited', retryAfterSeconds: 17 });
      const cell = await callOnce(bench, key, vendor, door);
      await applied;
      expect(cell.effects()).toBe(0);
      expect(cell.seen).toMatchObject({ ok: false, unknown: false, retryAfter: '17' });
      if (door === 'rest') expect(cell.seen.status).toBe(429);
      else {
        expect(cell.seen.code).toBe('vendor_rate_limited');
        expect(cell.seen.message).toContain('call again in 17s');
        expect(cell.seen.message).toContain('retry_after_seconds: 17');
      }
      await bench.deps.settler.flush();
      const [row] = await auditRows(bench.tdb.pool, key.id);
      expect(row).toMatchObject({ outcome: 'failed', cost_micros: 0, reserved_micros: 0 });
      expect(await keySpend(bench.tdb.pool, key.id)).toEqual({ spent: 0, reserved: 0 });
    },
  );

  it('twilio through the rest door: twilio-node raises its RestException (429) and the answer carries Retry-After', async () => {
    const key = await keyFor(bench.tdb.db, { policy: POLICY });
    const applied = bench.twilio.inject({ mode: 'rate_limited', retryAfterSeconds: 17 });
    const sdk = await callOnce(bench, key, 'twilio', 'rest');
    await applied;
    expect(sdk.seen).toMatchObject({ ok: false, status: 429 });
    // twilio-node keeps no headers on RestException: the same answer by hand shows the header.
    const hit = bench.twilio.inject({ mode: 'rate_limited', retryAfterSeconds: 17 });
    const res = await fetch(`${bench.http.url}/2010-04-01/Accounts/${AGENT_SID}/Messages.json`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${AGENT_SID}:${key.key}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ To: '+15557770042', Body: 'hello' }).toString(),
    });
    await hit;
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('17');
    expect(await res.json()).toMatchObject({ code: 20429, status: 429 });
  });

  it('on the lookup before a refund: the REST door answers 429 facts_unavailable with the vendor’s Retry-After, and MCP says when', async () => {
    const key = await keyFor(bench.tdb.db, { policy: POLICY });
    for (const door of ['rest', 'mcp'] as const) {
      const applied = bench.stripe.inject({
        mode: 'rate_limited',
        method: 'GET',
        path: /^\/v1\/(payment_intents|charges)\//,
        retryAfterSeconds: 9,
      });
      const cell = await callOnce(bench, key, 'stripe', door);
      await applied;
      expect(cell.effects()).toBe(0);
      expect(cell.seen).toMatchObject({ ok: false, code: 'facts_unavailable', retryAfter: '9' });
      if (door === 'rest') expect(cell.seen.status).toBe(429);
    }
  });
});

describe('retryAfterSeconds', () => {
  it.each([
    ['7', 7],
    [' 120 ', 120],
    ['0', 0],
    [undefined, undefined],
    ['', undefined],
    ['soon', undefined],
    ['-3', undefined],
    ['1.5', undefined],
    ['9999999', undefined],
    [['5', '6'], 5],
  ])('reads %j as %j', (header, seconds) => {
    expect(retryAfterSeconds(header)).toBe(seconds);
  });

  it('reads an HTTP date as the seconds until then, and a date already past as 0', () => {
    const now = Date.parse('2026-12-06T12:00:00Z');
    expect(retryAfterSeconds('Sun, 06 Dec 2026 12:01:30 GMT', now)).toBe(90);
    expect(retryAfterSeconds('Sun, 06 Dec 2026 11:00:00 GMT', now)).toBe(0);
  });
});
