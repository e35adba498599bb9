// Covers issue 23 item 3: no reservation is held forever. Reconcile settles a call the vendor answered twice under
// one idempotency key (the caller's retry owns the object) as a $0 replay of the row that owns it, releasing its
// reservation; and a call whose outcome stays unknown past LEASH_UNKNOWN_ALERT_AGE is shown to operators: a webhook
// alert, the console overview's count, and `leash audit query --outcome unknown`.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlerts } from '../src/admin/alerts.js';
import { createLogger } from '../src/config/logger.js';
import { reconcile } from '../src/pipeline/reconcile.js';
import { overview } from '../src/server/console/api.js';
import { sendJson, startRecordingServer, type RecordingServer } from '../src/vendor-kit/fake-server.js';
import { callOnce, FROM, startFaultBench, POLICY, type FaultBench } from './support/faults.js';
import { keyFor, testConfig } from './support/governance.js';
import { auditRows, keySpend } from './support/rest.js';
import { cli } from './support/run-cli.js';

let bench: FaultBench;
let hook: RecordingServer;

beforeAll(async () => {
  bench = await startFaultBench({ timeoutMs: 10_000 });
  hook = await startRecordingServer((_req, res) => sendJson(res, 200, { ok: true }));
}, 180_000);

afterAll(async () => {
  await hook?.close();
  await bench?.close();
});

const money = (r: { outcome: string; cost_micros: number; reserved_micros: number }) => [
  r.outcome,
  r.cost_micros,
  r.reserved_micros,
];

describe('reconcile and a call answered twice under one idempotency key', () => {
  it('settles the first as a $0 replay of the later row that owns the email (resend-node, a key with a slash), releasing its reservation', async () => {
    const key = await keyFor(bench.tdb.db, { policy: POLICY });
    const resend = bench.resendSdk(key.key);
    const email = { from: FROM, to: ['pat@acme.com'], subject: 'Order 42 shipped', text: 'on its way' };
    const acted = bench.resend.inject({ mode: 'error_500_acted', path: '/emails' });
    const first = await resend.emails.send(email, { idempotencyKey: 'orders/42' });
    await acted;
    expect(first.error).toMatchObject({ statusCode: 502, name: 'application_error' });
    expect(first.error?.message).toContain('the outcome is unknown');
    // The caller's retry with the same key goes on (Resend dedupes it) and gets the email Resend already sent.
    const again = await resend.emails.send(email, { idempotencyKey: 'orders/42' });
    expect(again.error).toBeNull();
    const sent = bench.resend.sent.filter((e) => e.subject === email.subject);
    expect(sent).toHaveLength(1);
    expect(again.data?.id).toBe(sent[0]!.id);
    await bench.deps.settler.flush();
    let rows = await auditRows(bench.tdb.pool, key.id);
    const price = rows[1]!.cost_micros;
    expect(price).toBeGreaterThan(0);
    expect(rows.map(money)).toEqual([
      ['unknown', 0, price],
      ['succeeded', price, 0],
    ]);

    const s = await reconcile(bench.deps, { graceSeconds: 0 });
    expect(s.rows.find((r) => r.id === rows[0]!.id)).toMatchObject({ before: 'unknown', after: 'replay' });
    rows = await auditRows(bench.tdb.pool, key.id);
    expect(rows.map(money)).toEqual([
      ['succeeded', 0, 0],
      ['succeeded', price, 0],
    ]);
    expect(rows[0]!.metadata.replay_of).toBe(rows[1]!.id);
    expect(await keySpend(bench.tdb.pool, key.id)).toEqual({ spent: price, reserved: 0 });
    expect(bench.resend.sent.filter((e) => e.subject === email.subject)).toHaveLength(1);
  });
});

describe('a call whose outcome stays unknown', () => {
  it('is announced once by webhook past LEASH_UNKNOWN_ALERT_AGE, counted on the console, and listed by audit query --outcome unknown', async () => {
    const key = await keyFor(bench.tdb.db, { policy: POLICY });
    // Twilio takes no idempotency key, and a message it never made cannot be found: reconcile cannot settle this.
    const applied = bench.twilio.inject({ mode: 'error_500' });
    const cell = await callOnce(bench, key, 'twilio', 'mcp');
    await applied;
    expect(cell.seen).toMatchObject({ ok: false, unknown: true });
    const [row] = await auditRows(bench.tdb.pool, key.id);
    expect(row).toMatchObject({ outcome: 'unknown' });
    const s = await reconcile(bench.deps, { graceSeconds: 0 });
    expect(s.rows.find((r) => r.id === row!.id)?.after).toBe('unknown');

    const alerts = startAlerts({
      config: testConfig({ LEASH_ALERT_WEBHOOK_URL: `${hook.url}/unknown`, LEASH_UNKNOWN_ALERT_AGE: '1s' }),
      db: bench.tdb.db,
      log: createLogger({ logLevel: 'silent' }),
      stuckCheckMs: 100,
    });
    try {
      const posted = () =>
        hook.received
          .filter((r) => r.path === '/unknown')
          .map((r) => JSON.parse(r.body) as { text: string; event: Record<string, unknown> })
          .filter((b) => b.event.type === 'unknown_outcomes');
      await expect.poll(() => posted().length, { timeout: 20_000, interval: 100 }).toBeGreaterThan(0);
      const [alert] = posted();
      expect(alert!.event).toMatchObject({ type: 'unknown_outcomes', older_than_seconds: 1 });
      expect(alert!.event.audit_ids).toContain(row!.id);
      expect(alert!.event.rows).toBeGreaterThanOrEqual(1);
      expect(alert!.text).toContain("'leash audit query --outcome unknown'");
      // Announced once: later checks (every 100 ms) see nothing new. Wait for more checks by waiting for a newer row.
      const before = posted().length;
      const other = await keyFor(bench.tdb.db, { policy: POLICY });
      const next = bench.twilio.inject({ mode: 'error_500' });
      await callOnce(bench, other, 'twilio', 'mcp');
      await next;
      const [otherRow] = await auditRows(bench.tdb.pool, other.id);
      await expect
        .poll(() => posted().some((a) => (a.event.audit_ids as string[]).includes(otherRow!.id)), {
          timeout: 20_000,
          interval: 100,
        })
        .toBe(true);
      expect(posted().length).toBe(before + 1);
    } finally {
      await alerts.close();
    }

    // The console's overview counts them (and its script shows the count).
    const o = await overview(bench.tdb.db, { approvals: false }, undefined, { unknownAgeSeconds: 1 });
    expect(o.unknown.count).toBeGreaterThanOrEqual(2);
    expect(o.unknown.older_than_seconds).toBe(1);
    expect(o.unknown.audit_ids).toContain(row!.id);
    expect(readFileSync(new URL('../console/main.ts', import.meta.url), 'utf8')).toContain(
      'renderUnknown(o.unknown)',
    );
    expect(
      (await overview(bench.tdb.db, { approvals: false }, undefined, { unknownAgeSeconds: 3600 })).unknown
        .count,
    ).toBe(0);

    // leash audit query --outcome unknown; --decision unknown points there.
    const env = {
      DATABASE_URL: bench.tdb.url,
      LEASH_HOME: '/nonexistent/leash-unknown-outcomes',
      LEASH_LOG: 'silent',
    };
    const listed = await cli(['audit', 'query', '--outcome', 'unknown', '--key', key.id, '--json'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(
      (JSON.parse(listed.stdout) as { id: string; outcome: string }[]).map((r) => [r.id, r.outcome]),
    ).toEqual([[row!.id, 'unknown']]);
    const old = await cli(
      ['audit', 'query', '--outcome', 'unknown', '--until', '1h', '--key', key.id, '--json'],
      env,
    );
    expect(JSON.parse(old.stdout)).toEqual([]);
    const wrong = await cli(['audit', 'query', '--decision', 'unknown'], env);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('use --outcome unknown');
    const bad = await cli(['audit', 'query', '--outcome', 'maybe'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--outcome must be one of');
  });
});
