// Covers issue 23 item 1: a call whose outcome is unknown (the vendor acted, then answered 500) is told so in the
// vendor's own error shape on the REST door and over MCP (leash code, audit id, "do not repeat", reconcile); an
// identical call of the same key meanwhile is refused outcome_pending naming the first, unless it repeats the
// first one's idempotency key (then the vendor answers it with the first refund); reconcile settles the first; the
// vendor makes exactly one refund in every case.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { uuidv7 } from '../src/audit/uuid.js';
import { admissionPayload, admitBatch, settleCall, type AuditDraft } from '../src/audit/write.js';
import { windowsFor } from '../src/ledger/windows.js';
import { reconcile } from '../src/pipeline/reconcile.js';
import { startFaultBench, POLICY, type FaultBench } from './support/faults.js';
import { keyFor } from './support/governance.js';
import { auditRows, caught, keySpend } from './support/rest.js';
import { cli } from './support/run-cli.js';
import { CANARIES } from './support/vendors.js';

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

/** The refunds Stripe was asked for on this payment (reconcile also replays other tests' unknown calls). */
const refundPosts = (paymentIntent: string) =>
  bench.stripe.received.filter(
    (r) => r.method === 'POST' && r.path === '/v1/refunds' && r.form.get('payment_intent') === paymentIntent,
  );
const money = (r: {
  decision: string;
  reason: string | null;
  outcome: string;
  cost_micros: number;
  reserved_micros: number;
}) => [r.decision === 'allowed' ? r.outcome : `denied:${r.reason}`, r.cost_micros, r.reserved_micros];

/** `leash reconcile` as an operator runs it, against the bench's database and fakes. */
async function leashReconcile() {
  const env = {
    DATABASE_URL: bench.tdb.url,
    LEASH_HOME: '/nonexistent/leash-outcome-pending',
    LEASH_LOG: 'silent',
    ...CANARIES,
    LEASH_STRIPE_BASE_URL: bench.stripe.url,
    LEASH_TWILIO_BASE_URL: bench.twilio.url,
    LEASH_RESEND_BASE_URL: bench.resend.url,
  };
  return cli(['reconcile', '--grace', '0', '--json'], env);
}

describe('the REST door, stripe-node, a refund Stripe made and then answered 500 for', () => {
  it('says the outcome is unknown in Stripe’s shape, refuses the client’s retries (new key, no key) as outcome_pending, and reconcile leaves one refund counted once', async () => {
    const p = bench.stripe.addPayment({ customer: 'cus_A', amount: 5000 });
    const key = await keyFor(bench.tdb.db, { policy: POLICY });
    const sdk = bench.stripeSdk(key.key);
    const acted = bench.stripe.inject({ mode: 'error_500_acted', path: '/v1/refunds' });
    const first = await caught(sdk.refunds.create({ payment_intent: p.payment_intent, amount: 1000 }));
    await acted;
    expect(p.amount_refunded).toBe(1000);
    // Stripe's error shape (stripe-node raises its usual StripeAPIError), not Stripe's raw 500 body.
    expect(first).toMatchObject({ type: 'StripeAPIError', statusCode: 502, code: 'vendor_unavailable' });
    const [row] = await auditRows(bench.tdb.pool, key.id);
    const message = String(first.message);
    expect(message).toContain('the outcome is unknown');
    expect(message).toContain('do not repeat this call');
    expect(message).toContain('leash reconcile settles it');
    expect(message).toContain(`[leash vendor_unavailable, audit id ${row!.id}]`);
    expect((first.headers as Record<string, string>)['leash-audit-id']).toBe(row!.id);
    // Committed as unknown before the answer, reservation held.
    expect(money(row!)).toEqual(['unknown', 0, 10_000_000]);

    // The client calls again: stripe-node keys every POST anew, so this is a new call with the same arguments.
    const again = await caught(sdk.refunds.create({ payment_intent: p.payment_intent, amount: 1000 }));
    // stripe-node raises a 409 as StripeAPIError (as it does Stripe's own idempotency_key_in_use), not retried.
    expect(again).toMatchObject({
      type: 'StripeAPIError',
      rawType: 'invalid_request_error',
      statusCode: 409,
      code: 'outcome_pending',
    });
    expect(String(again.message)).toContain(`audit id ${row!.id}) has an unknown outcome`);
    // And once more by hand, with no Idempotency-Key (and no Stripe-Version: not part of what the call does).
    const raw = await fetch(`${bench.http.url}/v1/refunds`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ payment_intent: p.payment_intent, amount: '1000' }).toString(),
    });
    expect(raw.status).toBe(409);
    expect(raw.headers.get('stripe-should-retry')).toBe('false');
    expect(await raw.json()).toMatchObject({
      error: { type: 'invalid_request_error', code: 'outcome_pending' },
    });
    expect(refundPosts(p.payment_intent)).toHaveLength(1);
    expect(p.amount_refunded).toBe(1000);

    const out = await leashReconcile();
    expect(out.code, out.stderr).toBe(0);
    const summary = JSON.parse(out.stdout) as { rows: { id: string; after: string }[] };
    expect(summary.rows.find((r) => r.id === row!.id)?.after).toBe('succeeded');
    // Reconcile replayed the first call with its own idempotency key: Stripe answered with the first refund.
    expect(refundPosts(p.payment_intent)).toHaveLength(2);
    expect(refundPosts(p.payment_intent)[1]!.headers['idempotency-key']).toBe(
      refundPosts(p.payment_intent)[0]!.headers['idempotency-key'],
    );
    expect(p.amount_refunded).toBe(1000);
    const rows = await auditRows(bench.tdb.pool, key.id);
    expect(money(rows[0]!)).toEqual(['succeeded', 10_000_000, 0]);
    expect(rows.slice(1).map(money)).toEqual([
      ['denied:outcome_pending', 0, 0],
      ['denied:outcome_pending', 0, 0],
    ]);
    expect(await keySpend(bench.tdb.pool, key.id)).toEqual({ spent: 10_000_000, reserved: 0 });
  });
});

describe('a retry with the first call’s own idempotency key', () => {
  it('is forwarded when stripe-node retries the 502 itself, answered with the first refund as a $0 replay, and reconcile counts the first once', async () => {
    const p = bench.stripe.addPayment({ customer: 'cus_A', amount: 5000 });
    const key = await keyFor(bench.tdb.db, { policy: POLICY });
    const acted = bench.stripe.inject({ mode: 'error_500_acted', path: '/v1/refunds' });
    // stripe-node retries a 5xx (leash says stripe-should-retry: true) with the Idempotency-Key it made up.
    const refund = await bench
      .stripeSdk(key.key, 1)
      .refunds.create({ payment_intent: p.payment_intent, amount: 700 });
    await acted;
    expect(refund.lastResponse.headers['idempotent-replayed']).toBe('true');
    expect(refundPosts(p.payment_intent)).toHaveLength(2);
    expect(p.amount_refunded).toBe(700);
    await bench.deps.settler.flush();
    let rows = await auditRows(bench.tdb.pool, key.id);
    expect(rows.map(money)).toEqual([
      ['unknown', 0, 7_000_000],
      ['succeeded', 0, 0],
    ]);
    expect(rows[1]!.metadata.replay_of).toBe(rows[0]!.id);
    expect(rows[1]!.metadata.idempotency_key).toBe(rows[0]!.metadata.idempotency_key);

    await reconcile(bench.deps, { graceSeconds: 0 });
    rows = await auditRows(bench.tdb.pool, key.id);
    expect(rows.map(money)).toEqual([
      ['succeeded', 7_000_000, 0],
      ['succeeded', 0, 0],
    ]);
    expect(p.amount_refunded).toBe(700);
    expect(await keySpend(bench.tdb.pool, key.id)).toEqual({ spent: 7_000_000, reserved: 0 });
  });

  it('is refused for Twilio, which takes no idempotency key: the same Idempotency-Key does not make a second message safe', async () => {
    const key = await keyFor(bench.tdb.db, { policy: POLICY });
    const body = new URLSearchParams({ To: '+15557770001', Body: 'your code is 1234' }).toString();
    const send = () =>
      fetch(`${bench.http.url}/2010-04-01/Accounts/${`AC${'0'.repeat(32)}`}/Messages.json`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`AC${'0'.repeat(32)}:${key.key}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
          'idempotency-key': 'sms-1',
        },
        body,
      });
    const acted = bench.twilio.inject({ mode: 'error_500_acted' });
    const first = await send();
    await acted;
    expect(first.status).toBe(502);
    expect(await first.json()).toMatchObject({ code: 20500, status: 502 });
    const second = await send();
    expect(second.status).toBe(409);
    expect(await second.json()).toMatchObject({
      code: 20409,
      status: 409,
      more_info: 'leash:refusal/outcome_pending',
    });
    expect(bench.twilio.received).toHaveLength(1);
  });
});

describe('the MCP door', () => {
  it('tells the agent the outcome is unknown, refuses the identical call as outcome_pending naming the first, and reconcile leaves one refund', async () => {
    const p = bench.stripe.addPayment({ customer: 'cus_A', amount: 5000 });
    const key = await keyFor(bench.tdb.db, { policy: POLICY });
    const args = { payment_intent: p.payment_intent, amount: 1000 };
    const acted = bench.stripe.inject({ mode: 'error_500_acted', path: '/v1/refunds' });
    const first = await bench.callTool(key.key, 'issue_refund', args);
    await acted;
    expect(first.isError).toBe(true);
    const f = first.structuredContent as {
      code: string;
      audit_id: string;
      details?: Record<string, unknown>;
    };
    expect(f).toMatchObject({
      code: 'vendor_unavailable',
      retryable: false,
      details: { outcome: 'unknown' },
    });
    const text = (first.content as { text: string }[])[0]!.text;
    expect(text).toMatch(/^vendor_unavailable: /);
    expect(text).toContain('the outcome is unknown');
    expect(text).toContain('Do not repeat');
    expect(text).toContain('leash reconcile settles it');
    expect(text).toContain(`audit_id: ${f.audit_id}`);

    const again = await bench.callTool(key.key, 'issue_refund', args);
    expect(again.structuredContent).toMatchObject({
      code: 'outcome_pending',
      retryable: false,
      details: { audit_id: f.audit_id },
    });
    expect((again.content as { text: string }[])[0]!.text).toContain(
      `audit id ${f.audit_id}) has an unknown outcome`,
    );
    // Four at once (admitted together, in one batch statement): all refused the same way.
    const burst = await Promise.all(
      Array.from({ length: 4 }, () => bench.callTool(key.key, 'issue_refund', args)),
    );
    expect(burst.map((r) => (r.structuredContent as { code: string }).code)).toEqual(
      Array(4).fill('outcome_pending'),
    );
    expect(refundPosts(p.payment_intent)).toHaveLength(1);
    expect(p.amount_refunded).toBe(1000);

    // Another amount is another call.
    const other = await bench.callTool(key.key, 'issue_refund', { ...args, amount: 200 });
    expect(other.isError ?? false).toBe(false);

    await reconcile(bench.deps, { graceSeconds: 0 });
    expect(p.amount_refunded).toBe(1200);
    const rows = await auditRows(bench.tdb.pool, key.id);
    expect(rows.find((r) => r.id === f.audit_id)).toMatchObject({
      outcome: 'succeeded',
      cost_micros: 10_000_000,
    });
    expect(rows.filter((r) => r.reason === 'outcome_pending')).toHaveLength(5);
    expect(await keySpend(bench.tdb.pool, key.id)).toEqual({ spent: 12_000_000, reserved: 0 });

    // Settled, the first call's outcome is known: the same arguments again are a new call.
    const later = await bench.callTool(key.key, 'issue_refund', args);
    expect(later.isError ?? false).toBe(false);
    expect(p.amount_refunded).toBe(2200);
  });
});

describe('the admission statement', () => {
  /** An admission payload for a REST refund of this key with these arguments and idempotency key. */
  async function payload(key: { key: string; id: string }, idem: string | null, sameKey: boolean) {
    const auth = await bench.deps.keys.identify(key.key, true);
    if (!auth.ok) throw new Error('key not found');
    const id = uuidv7();
    const draft: AuditDraft = {
      id,
      key_id: key.id,
      agent: auth.key.agent,
      run_id: auth.key.run_id,
      policy: auth.key.policy.name,
      policy_version: auth.key.policy.version,
      tool: 'stripe:POST /v1/refunds',
      vendor: 'stripe',
      operation: 'POST /v1/refunds',
      account: null,
      request: { body: { payment_intent: 'pi_digest', amount: '100' } },
      args_hash: 'same-digest',
      sandbox: false,
      door: 'http',
      amount: 100,
      currency: 'usd',
      metadata: idem ? { idempotency_key: idem } : {},
    };
    const windows = windowsFor(auth.key.policy, key.id, bench.deps.clock.now(), true);
    return {
      id,
      p: admissionPayload(
        {
          keyId: key.id,
          secretHash: auth.key.secret_hash,
          policyVersion: auth.key.policy.version,
          cost: 1_000_000,
          windows,
          loop: null,
          pending: { seconds: 3600, sameKey },
        },
        draft,
        bench.deps.auditHash,
      ),
    };
  }

  it('decides outcome_pending the same alone and in a batch: only the first call’s own key, to a vendor that dedupes, goes on', async () => {
    const key = await keyFor(bench.tdb.db, { policy: POLICY });
    const first = await payload(key, 'K1', true);
    expect((await admitBatch(bench.tdb.db, [first.p]))[0]).toMatchObject({ admitted: true });
    await settleCall(
      bench.tdb.db,
      first.id,
      'unknown',
      0,
      'settled',
      { error: 'timeout' },
      bench.deps.auditHash,
    );

    const cases = [
      await payload(key, 'K1', true), // its own key, a vendor that dedupes: goes on
      await payload(key, 'K2', true), // another key
      await payload(key, null, true), // no key
      await payload(key, 'K1', false), // its own key, a vendor that does not dedupe
    ];
    const expected = [
      { admitted: true },
      { admitted: false, code: 'outcome_pending', details: { audit_id: first.id } },
      { admitted: false, code: 'outcome_pending', details: { audit_id: first.id } },
      { admitted: false, code: 'outcome_pending', details: { audit_id: first.id } },
    ];
    // Together (leash_admit_batch's set-based path), then each alone (leash_admission → leash_admit_call).
    const together = await admitBatch(
      bench.tdb.db,
      cases.map((c) => c.p),
    );
    expect(together).toMatchObject(expected);
    const fresh = [
      await payload(key, 'K1', true),
      await payload(key, 'K2', true),
      await payload(key, null, true),
      await payload(key, 'K1', false),
    ];
    const alone = [];
    for (const c of fresh) alone.push((await admitBatch(bench.tdb.db, [c.p]))[0]);
    expect(alone).toMatchObject(expected);
    // A call that does not ask (a replica on the previous version) is decided as before.
    const old = await payload(key, 'K3', true);
    const { pending: _ignored, ...withoutPending } = old.p;
    expect((await admitBatch(bench.tdb.db, [withoutPending as typeof old.p]))[0]).toMatchObject({
      admitted: true,
    });
  });
});
