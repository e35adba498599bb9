// Covers tripwires (issue 27) through the real pipeline on two replicas (two pools, one database) with the real Twilio
// and Stripe SDKs against their fakes: calls, denials and spend per sliding window, exact under concurrency, the call
// over the line refused tripwire_tripped and its scope paused in the same statement, every later call key_paused until
// resumed, one alert; alert, warn and shadow modes; per-agent, per-run and revoke; operator pause and resume; batches.
import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdmissionQueue } from '../src/audit/admission-queue.js';
import { uuidv7 } from '../src/audit/uuid.js';
import { admissionPayload, admitBatch, type AdmitResult, type AuditDraft } from '../src/audit/write.js';
import type { DbHandle } from '../src/db/database.js';
import { authenticate } from '../src/keys/authenticate.js';
import { activePause, listPaused, pause, resume } from '../src/keys/pauses.js';
import { KeyError } from '../src/keys/vault-keys.js';
import { windowsFor } from '../src/ledger/windows.js';
import { tripwiresFor } from '../src/policy/tripwires.js';
import type { PipelineDeps, PipelineEvent, ToolCallResult } from '../src/pipeline/run-tool.js';
import type { Catalog, VendorSpec } from '../src/pipeline/tool.js';
import { createAuthThrottle } from '../src/server/auth-throttle.js';
import { startHttpServer } from '../src/server/http.js';
import { restRoutes } from '../src/server/rest.js';
import { catalog as fullCatalog, vendorApis } from '../tools/index.js';
import { stripeVendor } from '../tools/stripe/client.js';
import { issueRefund } from '../tools/stripe/issue-refund.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { twilioVendor } from '../tools/twilio/client.js';
import { startTwilioFake, type TwilioFake } from '../tools/twilio/sandbox.js';
import { sendSms } from '../tools/twilio/send-sms.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import {
  applyTestPolicy,
  keyFor,
  pipelineFor,
  readAuditRow,
  settledRun,
  testConfig,
} from './support/governance.js';

const catalog: Catalog = {
  tools: new Map([
    [sendSms.name, sendSms],
    [issueRefund.name, issueRefund],
  ]),
  vendors: new Map<string, VendorSpec>([
    ['twilio', twilioVendor],
    ['stripe', stripeVendor],
  ]),
};
const SMS = { from: '+15550001111', to_prefixes: ['+1'], max_segments: 3 };
/** What one one-segment SMS to +1 is admitted at (the price sheet's estimate). */
const SMS_MICROS = 8_300;

let tdb: TestDatabase;
let other: DbHandle;
let twilio: TwilioFake;
let stripe: StripeFake;
/** Two replicas: pipelines on two pools of the same database. */
let a: PipelineDeps;
let b: PipelineDeps;
let config: ReturnType<typeof testConfig>;
const events: PipelineEvent[] = [];

beforeAll(async () => {
  tdb = await freshDatabase(16);
  other = await tdb.openPool(16);
  [twilio, stripe] = await Promise.all([startTwilioFake(), startStripeFake(false)]);
  config = testConfig({
    TWILIO_ACCOUNT_SID: `AC${randomBytes(16).toString('hex')}`,
    TWILIO_AUTH_TOKEN: randomBytes(16).toString('hex'),
    LEASH_TWILIO_BASE_URL: twilio.url,
    STRIPE_SECRET_KEY: 'sk_test_tripwires_0a1b2c',
    LEASH_STRIPE_BASE_URL: stripe.url,
  });
  a = pipelineFor(tdb.db, catalog, config);
  b = pipelineFor(other.db, catalog, config);
  for (const d of [a, b]) d.onEvent = (e) => events.push(e);
});

afterAll(async () => {
  await Promise.all([a.settler.flush(), b.settler.flush()]);
  await other.close();
  await twilio.close();
  await stripe.close();
  await tdb.close();
});

let serial = 0;
/** A policy of its own for each test (so no test reads what another left), with these wires. */
async function policy(tripwires: unknown[], tools: Record<string, unknown> = { send_sms: SMS }) {
  const name = `tw-${++serial}`;
  await applyTestPolicy(tdb.db, catalog, { name, tools, tripwires });
  return name;
}

/** A distinct +1 number each time (no two calls of a test are the same call). */
let numbers = 0;
const nextNumber = () => `+1555${String(2_000_000 + ++numbers).padStart(7, '0')}`;
const sms = (to = nextNumber()) => ({ to, body: 'Your order shipped.' });

const code = (r: ToolCallResult) => (r.ok ? 'ok' : r.failure.code);
const sentTo = (numbersSent: readonly string[]) =>
  twilio.received.filter((r) => numbersSent.includes(String(r.form?.To))).length;
const tripwireEvents = (keyIds: readonly string[]) =>
  events.filter((e) => e.type === 'tripwire' && keyIds.includes(e.key_id));

/** A loop of calls, one at a time, alternating between the two replicas. */
async function loop(n: number, key: string, tool: string, args: () => unknown): Promise<ToolCallResult[]> {
  const out: ToolCallResult[] = [];
  for (let i = 0; i < n; i++) out.push(await settledRun(i % 2 ? b : a, key, tool, args()));
  return out;
}

describe('a tripwire in enforce mode pauses the scope it measures', () => {
  it('calls_per_minute 10 across two replicas: 10 admitted, the 11th tripwire_tripped, then key_paused; one alert; resumed, the next is admitted', async () => {
    const name = await policy([{ when: { calls_per_minute: 10 } }]);
    const key = await keyFor(tdb.db, { policy: name, agent: `loop-${name}` });
    const to: string[] = [];
    const results = await loop(14, key.key, 'send_sms', () => sms(to[to.push(nextNumber()) - 1]));

    expect(results.map(code)).toEqual([
      ...Array<string>(10).fill('ok'),
      'tripwire_tripped',
      'key_paused',
      'key_paused',
      'key_paused',
    ]);
    expect(sentTo(to)).toBe(10);
    const tripped = results[10];
    expect(tripped?.ok).toBe(false);
    if (tripped && !tripped.ok) {
      expect(tripped.failure.details).toMatchObject({
        wire: 'calls_per_minute',
        metric: 'calls_per_minute',
        figure: 11,
        limit: 10,
        window_seconds: 60,
        per: 'key',
        scope_kind: 'key',
        scope: key.id,
        action: 'pause',
      });
      expect(tripped.failure.retryable).toBe(false);
      expect(tripped.failure.message).toMatch(
        /tripwire 'calls_per_minute' tripped: 11 calls_per_minute .* limit of 10/,
      );
      const row = await readAuditRow(tdb.db, tripped.failure.audit_id);
      expect(row).toMatchObject({ decision: 'denied', reason: 'tripwire_tripped', reserved_micros: 0 });
    }
    // One alert, from whichever replica saw the call over the line.
    expect(tripwireEvents([key.id])).toEqual([
      expect.objectContaining({ type: 'tripwire', wire: 'calls_per_minute', action: 'pause', figure: 11 }),
    ]);
    expect(await activePause(tdb.db, { kind: 'key', id: key.id })).toMatchObject({
      wire: 'calls_per_minute',
      policy: name,
      paused_by: 'tripwire',
    });

    expect(await resume(tdb.db, { kind: 'key', id: key.id }, 'ops-alice')).toMatchObject({
      resumed_by: 'ops-alice',
    });
    // The wire counts from the resume: the 10 calls of the last minute no longer trip it.
    const after = await loop(2, key.key, 'send_sms', () => sms());
    expect(after.map(code)).toEqual(['ok', 'ok']);
    expect(tripwireEvents([key.id])).toHaveLength(1);
  });

  it('denials_per_minute 10 for a probing agent: 10 refusals as themselves, the 11th tripwire_tripped, then key_paused; resumed, a good call goes', async () => {
    const name = await policy([{ when: { denials_per_minute: 10 } }]);
    const key = await keyFor(tdb.db, { policy: name, agent: `probe-${name}` });
    twilio.received.length = 0;
    // Numbers outside +1 are refused before admission, by policy.
    const probes = await loop(11, key.key, 'send_sms', () =>
      sms(`+4477009${String(++numbers).padStart(5, '0')}`),
    );
    expect(probes.map(code)).toEqual([
      ...Array<string>(10).fill('recipient_not_allowed'),
      'tripwire_tripped',
    ]);
    const tripped = probes[10];
    if (tripped && !tripped.ok)
      expect(tripped.failure.details).toMatchObject({
        wire: 'denials_per_minute',
        figure: 11,
        limit: 10,
        refused: { code: 'recipient_not_allowed' },
      });
    // Every later call of the key, a good one included, on either replica.
    const later = await loop(2, key.key, 'send_sms', () => sms());
    expect(later.map(code)).toEqual(['key_paused', 'key_paused']);
    expect(twilio.received).toHaveLength(0);
    expect(tripwireEvents([key.id])).toEqual([
      expect.objectContaining({ wire: 'denials_per_minute', action: 'pause' }),
    ]);

    await resume(tdb.db, { kind: 'key', id: key.id }, 'ops-bob');
    expect(code(await settledRun(b, key.key, 'send_sms', sms()))).toBe('ok');
  });

  it('does not count refusals for the vendor’s trouble (a lookup that failed) toward denials_per_minute', async () => {
    const name = await policy([{ when: { denials_per_minute: 1 } }], {
      issue_refund: { max_amount_usd: 50 },
    });
    const key = await keyFor(tdb.db, { policy: name, agent: `lookups-${name}` });
    const pi = () => stripe.addPayment({ amount: 10_000 }).payment_intent;
    const missing = {
      type: 'invalid_request_error',
      code: 'resource_missing',
      message: 'No such payment_intent',
    };
    const results: ToolCallResult[] = [];
    for (const d of [a, b]) {
      stripe.failNext(404, missing);
      results.push(await settledRun(d, key.key, 'issue_refund', { payment_intent: pi() }));
    }
    // Over max_amount_usd: the agent's own doing, the first denial the wire counts (1 is the line, not over it).
    results.push(await settledRun(a, key.key, 'issue_refund', { payment_intent: pi(), amount: 9_000 }));
    results.push(await settledRun(b, key.key, 'issue_refund', { payment_intent: pi(), amount: 9_000 }));
    expect(results.map(code)).toEqual([
      'facts_unavailable',
      'facts_unavailable',
      'amount_over_limit',
      'tripwire_tripped',
    ]);
  });

  it('spend_usd_per_10m 50 on refunds across two replicas: $40 admitted, the refund that would make $60 tripped, then key_paused; resumed, the next goes', async () => {
    const name = await policy([{ when: { spend_usd_per_10m: 50 } }], {
      issue_refund: { max_amount_usd: 50 },
    });
    const key = await keyFor(tdb.db, { policy: name, agent: `refunds-${name}` });
    const refund = () => ({ payment_intent: stripe.addPayment({ amount: 2_000 }).payment_intent });
    stripe.received.length = 0;
    const results = await loop(4, key.key, 'issue_refund', refund);
    expect(results.map(code)).toEqual(['ok', 'ok', 'tripwire_tripped', 'key_paused']);
    expect(stripe.received.filter((r) => r.method === 'POST' && r.path === '/v1/refunds')).toHaveLength(2);
    const tripped = results[2];
    if (tripped && !tripped.ok) {
      expect(tripped.failure.details).toMatchObject({
        wire: 'spend_usd_per_10m',
        figure: 60_000_000,
        limit: 50_000_000,
        window_seconds: 600,
      });
      expect(tripped.failure.message).toContain(
        '$60.00 spend_usd_per_10m is over its limit of $50.00 in 600s',
      );
    }
    expect(tripwireEvents([key.id])).toHaveLength(1);

    await resume(tdb.db, { kind: 'key', id: key.id }, 'ops-carol');
    expect(code(await settledRun(a, key.key, 'issue_refund', refund()))).toBe('ok');
  });
});

describe('exact under concurrency', () => {
  /**
   * Two replicas under load: each admits up to 8 batches at a time (the default is one), so up to 16 admissions — calls
   * alone and batches — race in Postgres at once.
   */
  let busy: PipelineDeps[];
  beforeAll(async () => {
    busy = [tdb.db, other.db].map((db) => {
      const d = pipelineFor(db, catalog, config);
      d.admissions = new AdmissionQueue(db, d.auditHash, 64, 8);
      d.onEvent = (e) => events.push(e);
      return d;
    });
    // Warm (vendor clients, the key cache's first lookups), so the racing calls reach admission together.
    const warm = await keyFor(tdb.db, { policy: await policy([]) });
    for (const d of busy) expect(code(await settledRun(d, warm.key, 'send_sms', sms()))).toBe('ok');
  });
  afterAll(async () => {
    await Promise.all(busy.map((d) => d.settler.flush()));
  });

  async function race(name: string, n: number, to = () => nextNumber()) {
    const key = await keyFor(tdb.db, { policy: name, agent: `race-${name}` });
    const numbersSent = Array.from({ length: n }, to);
    const results = await Promise.all(
      numbersSent.map((t, i) => settledRun(busy[i % 2]!, key.key, 'send_sms', sms(t))),
    );
    return { key, to: numbersSent, results };
  }
  const tally = (results: ToolCallResult[]) =>
    results.map(code).reduce<Record<string, number>>((m, c) => ({ ...m, [c]: (m[c] ?? 0) + 1 }), {});

  it('admits exactly 50 of 200 concurrent calls across two replicas against calls_per_minute 50', async () => {
    const name = await policy([{ when: { calls_per_minute: 50 } }]);
    const { key, to, results } = await race(name, 200);
    expect(tally(results)).toEqual({ ok: 50, tripwire_tripped: 1, key_paused: 149 });
    expect(sentTo(to)).toBe(50);
    expect(tripwireEvents([key.id])).toHaveLength(1);
    const allowed = await tdb.db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('key_id', '=', key.id)
      .where('decision', '=', 'allowed')
      .executeTakeFirstOrThrow();
    expect(Number(allowed.n)).toBe(50);
  });

  it('admits exactly the calls that fit in 200 concurrent ones against spend_usd_per_10m', async () => {
    // 40 one-segment messages at $0.0083.
    const name = await policy([{ when: { spend_usd_per_10m: (40 * SMS_MICROS) / 1e6 } }]);
    const { key, results } = await race(name, 200);
    expect(tally(results)).toEqual({ ok: 40, tripwire_tripped: 1, key_paused: 159 });
    expect(tripwireEvents([key.id])).toHaveLength(1);
  });

  it('refuses exactly 50 of 200 concurrent probes as themselves against denials_per_minute 50, then pauses', async () => {
    const name = await policy([{ when: { denials_per_minute: 50 } }]);
    // Refused before admission, each written by its own statement: they race in Postgres whatever the queue does.
    const { key, results } = await race(name, 200, () => `+4477009${String(++numbers).padStart(5, '0')}`);
    expect(tally(results)).toEqual({ recipient_not_allowed: 50, tripwire_tripped: 1, key_paused: 149 });
    expect(tripwireEvents([key.id])).toHaveLength(1);
  });
});

describe('modes and actions', () => {
  it('alert admits every call and alerts once per window, however many calls go over the line', async () => {
    const name = await policy([{ name: 'chatty', when: { calls_per_minute: 3 }, then: 'alert' }]);
    const key = await keyFor(tdb.db, { policy: name });
    const results = await loop(7, key.key, 'send_sms', () => sms());
    expect(results.map(code)).toEqual(Array<string>(7).fill('ok'));
    expect(tripwireEvents([key.id])).toEqual([
      expect.objectContaining({ wire: 'chatty', action: 'alert', figure: 4, limit: 3, mode: 'enforce' }),
    ]);
    expect(await activePause(tdb.db, { kind: 'key', id: key.id })).toBeUndefined();
  });

  it('warn only alerts (once per window) where enforce would pause', async () => {
    const name = await policy([{ when: { calls_per_minute: 2 }, mode: 'warn' }]);
    const key = await keyFor(tdb.db, { policy: name });
    const results = await loop(5, key.key, 'send_sms', () => sms());
    expect(results.map(code)).toEqual(Array<string>(5).fill('ok'));
    expect(tripwireEvents([key.id])).toEqual([
      expect.objectContaining({ action: 'alert', mode: 'warn', would: 'pause', figure: 3 }),
    ]);
    expect(await activePause(tdb.db, { kind: 'key', id: key.id })).toBeUndefined();
  });

  it('shadow admits, raises nothing, and records on each audit row over the line what it would have done', async () => {
    const name = await policy([{ when: { calls_per_minute: 2 }, mode: 'shadow', then: 'revoke' }]);
    const key = await keyFor(tdb.db, { policy: name });
    const results = await loop(4, key.key, 'send_sms', () => sms());
    expect(results.map(code)).toEqual(['ok', 'ok', 'ok', 'ok']);
    const rows = await Promise.all(results.map((r) => readAuditRow(tdb.db, r.ok ? r.audit_id : null)));
    expect(rows.map((r) => r.metadata.tripwires)).toEqual([
      undefined,
      undefined,
      [{ wire: 'calls_per_minute', figure: 3, limit: 2, would: 'revoke' }],
      [{ wire: 'calls_per_minute', figure: 4, limit: 2, would: 'revoke' }],
    ]);
    expect(tripwireEvents([key.id])).toEqual([]);
    const row = await tdb.db
      .selectFrom('vault_keys')
      .select('revoked_at')
      .where('id', '=', key.id)
      .executeTakeFirstOrThrow();
    expect(row.revoked_at).toBeNull();
  });

  it('per agent: the agent is paused, so its other keys are refused key_paused on both replicas', async () => {
    const name = await policy([{ when: { calls_per_minute: 3 }, per: 'agent' }]);
    const agent = `agent-${name}`;
    const k1 = await keyFor(tdb.db, { policy: name, agent, runId: 'r1' });
    const k2 = await keyFor(tdb.db, { policy: name, agent, runId: 'r2' });
    const results = [
      ...(await loop(2, k1.key, 'send_sms', () => sms())),
      ...(await loop(2, k2.key, 'send_sms', () => sms())),
    ];
    expect(results.map(code)).toEqual(['ok', 'ok', 'ok', 'tripwire_tripped']);
    const tripped = results[3];
    if (tripped && !tripped.ok)
      expect(tripped.failure.details).toMatchObject({
        wire: 'calls_per_minute_agent',
        scope_kind: 'agent',
        scope: agent,
      });
    for (const d of [a, b]) expect(code(await settledRun(d, k1.key, 'send_sms', sms()))).toBe('key_paused');
    expect(await listPaused(tdb.db)).toContainEqual(
      expect.objectContaining({ scope_kind: 'agent', scope: agent, wire: 'calls_per_minute_agent' }),
    );
  });

  it('revoke per run revokes the run’s keys (and only them): later calls are key_revoked', async () => {
    const name = await policy([{ when: { calls_per_minute: 2 }, per: 'run', then: 'revoke' }]);
    const run = `run-${name}`;
    const k1 = await keyFor(tdb.db, { policy: name, runId: run });
    const k2 = await keyFor(tdb.db, { policy: name, runId: run });
    const elsewhere = await keyFor(tdb.db, { policy: name, runId: `${run}-other` });
    const results = await loop(3, k1.key, 'send_sms', () => sms());
    expect(results.map(code)).toEqual(['ok', 'ok', 'tripwire_tripped']);
    const tripped = results[2];
    if (tripped && !tripped.ok)
      expect(tripped.failure.details).toMatchObject({ action: 'revoke', revoked_keys: 2 });
    const keys = await tdb.db
      .selectFrom('vault_keys')
      .select(['id', 'revoked_at', 'revoked_reason'])
      .where('id', 'in', [k1.id, k2.id, elsewhere.id])
      .execute();
    const byId = new Map(keys.map((k) => [k.id, k]));
    expect(byId.get(k1.id)?.revoked_reason).toMatch(
      /^tripwire calls_per_minute_run of policy tw-\d+: 3 calls_per_minute over 2/,
    );
    expect(byId.get(k2.id)?.revoked_at).not.toBeNull();
    expect(byId.get(elsewhere.id)?.revoked_at).toBeNull();
    expect(code(await settledRun(b, k2.key, 'send_sms', sms()))).toBe('key_revoked');
    expect(code(await settledRun(b, elsewhere.key, 'send_sms', sms()))).toBe('ok');
    expect(tripwireEvents([k1.id])).toEqual([expect.objectContaining({ action: 'revoke' })]);
  });

  it('distinct_recipients_per_hour per agent alerts when a new recipient goes over the line, and repeats do not count', async () => {
    const name = await policy([{ when: { distinct_recipients_per_hour: 3 }, per: 'agent', then: 'alert' }]);
    const key = await keyFor(tdb.db, { policy: name, agent: `fanout-${name}` });
    const [r1, r2, r3, r4] = [nextNumber(), nextNumber(), nextNumber(), nextNumber()];
    const seq = [r1, r2, r1, r3, r2, r3, r1];
    const before = await loop(seq.length, key.key, 'send_sms', () => sms(seq.shift()));
    expect(before.map(code)).toEqual(Array<string>(7).fill('ok'));
    expect(tripwireEvents([key.id])).toEqual([]);
    expect(code(await settledRun(a, key.key, 'send_sms', sms(r4)))).toBe('ok');
    expect(tripwireEvents([key.id])).toEqual([
      expect.objectContaining({
        wire: 'distinct_recipients_per_hour_agent',
        figure: 4,
        limit: 3,
        action: 'alert',
      }),
    ]);
  });
});

describe('operators pause and resume', () => {
  it('pauses an agent on every replica until resumed, and says so for a scope that is already paused', async () => {
    const name = await policy([]);
    const agent = `ops-${name}`;
    const key = await keyFor(tdb.db, { policy: name, agent });
    expect(code(await settledRun(a, key.key, 'send_sms', sms()))).toBe('ok');
    const first = await pause(tdb.db, { kind: 'agent', id: agent }, 'ops-dana', 'investigating');
    expect(first).toMatchObject({
      paused: true,
      pause: { scope: agent, wire: null, details: { reason: 'investigating' } },
    });
    expect((await pause(tdb.db, { kind: 'agent', id: agent }, 'ops-erin')).paused).toBe(false);
    for (const d of [a, b]) {
      const r = await settledRun(d, key.key, 'send_sms', sms());
      expect(code(r)).toBe('key_paused');
      if (!r.ok) expect(r.failure.message).toMatch(/paused/);
    }
    expect(await resume(tdb.db, { kind: 'agent', id: agent }, 'ops-dana')).toMatchObject({
      resumed_by: 'ops-dana',
    });
    expect(await resume(tdb.db, { kind: 'agent', id: agent }, 'ops-dana')).toBeUndefined();
    expect(code(await settledRun(b, key.key, 'send_sms', sms()))).toBe('ok');
  });

  it('refuses a malformed scope or an unknown key, naming the field', async () => {
    await expect(pause(tdb.db, { kind: 'key', id: 'nope' }, 'ops')).rejects.toThrow(KeyError);
    await expect(pause(tdb.db, { kind: 'key', id: 'abcdefghijkl' }, 'ops')).rejects.toThrow(
      "no key 'abcdefghijkl'",
    );
    await expect(pause(tdb.db, { kind: 'agent', id: 'x'.repeat(129) }, 'ops')).rejects.toThrow(
      /^agent must be/,
    );
    await expect(pause(tdb.db, { kind: 'agent', id: 'fine' }, ' ')).rejects.toThrow(/^by must be/);
  });
});

describe('batched admission', () => {
  type Authed = Extract<Awaited<ReturnType<typeof authenticate>>, { ok: true }>['key'];

  function payload(k: Authed, cost = SMS_MICROS) {
    const draft: AuditDraft = {
      id: uuidv7(),
      key_id: k.id,
      agent: k.agent,
      run_id: k.run_id,
      policy: k.policy.name,
      policy_version: k.policy.version,
      tool: 'send_sms',
      vendor: 'twilio',
      operation: 'POST /2010-04-01/Accounts/{sid}/Messages.json',
      account: null,
      request: { n: uuidv7() },
      args_hash: uuidv7(),
      sandbox: false,
      amount: null,
      currency: null,
      metadata: {},
    };
    return admissionPayload(
      {
        keyId: k.id,
        secretHash: k.secret_hash,
        policyVersion: k.policy.version,
        cost,
        windows: windowsFor(k.policy, k.id, new Date(), true),
        loop: null,
        tripwires: tripwiresFor(k.policy, k),
      },
      draft,
      a.auditHash,
    );
  }
  const codes = (rs: AdmitResult[]) => rs.map((r) => ('stale' in r ? 'stale' : r.admitted ? 'ok' : r.code));

  async function authed(name: string): Promise<Authed> {
    const minted = await keyFor(tdb.db, { policy: name });
    const auth = await authenticate(tdb.db, minted.key);
    if (!auth.ok) throw new Error('the key did not authenticate');
    return auth.key;
  }

  it('decides a batch one call at a time against a wire: the calls before the line, the one over it, then paused', async () => {
    const k = await authed(await policy([{ when: { calls_per_minute: 4 } }]));
    const rs = await admitBatch(
      other.db,
      Array.from({ length: 7 }, () => payload(k)),
    );
    expect(codes(rs)).toEqual(['ok', 'ok', 'ok', 'ok', 'tripwire_tripped', 'key_paused', 'key_paused']);
    expect(rs[4]).toMatchObject({ tripwires: [{ wire: 'calls_per_minute', action: 'pause', figure: 5 }] });
  });

  it('admits a batch under the line all at once, and counts it: the next batch stops exactly at the line', async () => {
    const k = await authed(
      await policy([{ when: { calls_per_minute: 10 } }, { when: { spend_usd_per_10m: 1 } }]),
    );
    expect(
      codes(
        await admitBatch(
          tdb.db,
          Array.from({ length: 6 }, () => payload(k)),
        ),
      ),
    ).toEqual(Array<string>(6).fill('ok'));
    const marks = await tdb.db
      .selectFrom('tripwire_marks')
      .select(['seq', 'calls', 'usd_micros', 'add_calls', 'add_usd'])
      .where('scope', '=', `key:${k.id}`)
      .orderBy('seq')
      .execute();
    expect(marks.map((m) => [m.seq, m.calls, m.usd_micros, m.add_calls, m.add_usd])).toEqual(
      [1, 2, 3, 4, 5, 6].map((i) => [i, i - 1, (i - 1) * SMS_MICROS, 1, SMS_MICROS]),
    );
    const rs = await admitBatch(
      other.db,
      Array.from({ length: 6 }, () => payload(k)),
    );
    expect(codes(rs)).toEqual(['ok', 'ok', 'ok', 'ok', 'tripwire_tripped', 'key_paused']);
    expect(rs[4]).toMatchObject({ details: { wire: 'calls_per_minute', figure: 11 } });
  });

  it('refuses key_paused in a batch of calls without wires (the set-based path)', async () => {
    const name = await policy([]);
    const k = await authed(name);
    await pause(tdb.db, { kind: 'policy', id: name }, 'ops');
    const rs = await admitBatch(tdb.db, [payload(k), payload(k)]);
    expect(codes(rs)).toEqual(['key_paused', 'key_paused']);
    expect(rs[0]).toMatchObject({ details: { scope_kind: 'policy', scope: name, wire: null } });
  });
});

describe('the REST front door', () => {
  it('answers the refund over the line 429 tripwire_tripped, which stripe-node does not retry, then 403 key_paused', async () => {
    const deps = pipelineFor(tdb.db, fullCatalog, config);
    const throttle = createAuthThrottle({ maxFailures: 100, windowMs: 60_000, trustProxyHops: 0 });
    const http = await startHttpServer(deps, {
      host: '127.0.0.1',
      port: 0,
      routes: [restRoutes(deps, { apis: vendorApis, throttle })],
      throttle,
    });
    try {
      const name = `tw-rest-${++serial}`;
      await applyTestPolicy(tdb.db, fullCatalog, {
        name,
        tools: {},
        vendors: { stripe: { http: { 'POST /v1/refunds': { max_amount_usd: 50 } } } },
        tripwires: [{ when: { spend_usd_per_10m: 50 } }],
      });
      const key = await keyFor(tdb.db, { policy: name });
      // Retries on: the answer must keep stripe-node from trying again.
      const sdk = new Stripe(key.key, {
        host: '127.0.0.1',
        port: Number(new URL(http.url).port),
        protocol: 'http',
        maxNetworkRetries: 2,
      });
      const refund = () =>
        sdk.refunds.create({ payment_intent: stripe.addPayment({ amount: 3_000 }).payment_intent }).then(
          () => 'ok',
          (e: unknown) => e,
        );
      stripe.received.length = 0;
      expect(await refund()).toBe('ok');
      const tripped = await refund();
      expect(tripped).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
      expect(tripped).toMatchObject({ statusCode: 429, code: 'tripwire_tripped' });
      expect(String((tripped as Error).message)).toMatch(/tripwire 'spend_usd_per_10m' tripped: \$60\.00/);
      const paused = await refund();
      expect(paused).toBeInstanceOf(Stripe.errors.StripePermissionError);
      expect(paused).toMatchObject({ statusCode: 403, code: 'key_paused' });
      expect(stripe.received.filter((r) => r.method === 'POST' && r.path === '/v1/refunds')).toHaveLength(1);
    } finally {
      await http.close();
      await deps.settler.flush();
    }
  });
});
