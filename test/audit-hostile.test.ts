// Covers audit rows under hostile agent input: NULs, lone surrogates, huge arguments, unknown tools and invalid
// input all leave a denied row (and an alert event) through the real pipeline, real Postgres and a fake Resend.
import { createHmac, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { canonicalJson } from '../src/policy/compile.js';
import type { PipelineDeps, PipelineEvent } from '../src/pipeline/run-tool.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { resendVendor } from '../tools/resend/client.js';
import { startResendFake, type ResendFake } from '../tools/resend/sandbox.js';
import { sendEmail } from '../tools/resend/send-email.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import {
  applyTestPolicy,
  keyFor,
  pipelineFor,
  testConfig,
  settledRun,
  readAuditRow,
} from './support/governance.js';

const NUL = String.fromCharCode(0);
const FROM = 'Support <support@acme.com>';
const AUDIT_KEY = Buffer.alloc(32, 0x2b);
const catalog: Catalog = {
  tools: new Map([['send_email', sendEmail]]),
  vendors: new Map([['resend', resendVendor]]),
};

let tdb: TestDatabase;
let fake: ResendFake;
let deps: PipelineDeps;
let key: string;
let keyId: string;
const events: PipelineEvent[] = [];

beforeAll(async () => {
  tdb = await freshDatabase();
  fake = await startResendFake();
  const config = testConfig({
    RESEND_API_KEY: 're_hostile_test_key_123',
    LEASH_RESEND_BASE_URL: fake.url,
    LEASH_AUDIT_KEY: AUDIT_KEY.toString('base64'),
  });
  deps = { ...pipelineFor(tdb.db, catalog, config), onEvent: (e) => events.push(e) };
  await applyTestPolicy(tdb.db, catalog, {
    name: 'hostile',
    tools: { send_email: { from: FROM, to_domains: ['acme.com'], max_recipients: 3 } },
  });
  const k = await keyFor(tdb.db, { policy: 'hostile' });
  key = k.key;
  keyId = k.id;
});

afterAll(async () => {
  await fake.close();
  await tdb.close();
});

beforeEach(() => {
  fake.received.length = 0;
  events.length = 0;
});

const row = (id: string | null) => readAuditRow(tdb.db, id);

const count = async () =>
  Number(
    (
      await tdb.db
        .selectFrom('audit_log')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

/** Runs one call and returns its failure code, its audit row and the denied event it emitted. */
async function deniedCall(tool: string, args: unknown, presented = key) {
  const r = await settledRun(deps, presented, tool, args);
  if (r.ok) throw new Error('expected a denial');
  return {
    failure: r.failure,
    row: await row(r.failure.audit_id),
    event: events.filter((e) => e.type !== 'finished').at(-1),
  };
}

describe('denials with text Postgres cannot hold', () => {
  it.each([
    ['a NUL in the subject', `Refund${NUL}now`, 'Refund\\u0000now'],
    ['a lone surrogate in the subject', 'Refund\ud800now', 'Refund\ufffdnow'],
    ['a lone low surrogate in the subject', '\udfffRefund', '\ufffdRefund'],
  ])(
    'writes the denied row, fires the alert event and sends nothing for %s',
    async (_what, subject, stored) => {
      const d = await deniedCall('send_email', { to: ['eve@evil.com'], subject, text: 'hi' });
      expect(d.failure.code).toBe('recipient_not_allowed');
      expect(d.row).toMatchObject({
        decision: 'denied',
        reason: 'recipient_not_allowed',
        key_id: keyId,
        tool: 'send_email',
        request: { to: ['eve@evil.com'], subject: stored, text_length: 2 },
      });
      expect(d.row.metadata).toMatchObject({
        request_sanitized: true,
        args_sha256: expect.stringMatching(/^[0-9a-f]{64}$/) as unknown,
      });
      expect(d.event).toMatchObject({ type: 'denied', code: 'recipient_not_allowed', audit_id: d.row.id });
      expect(fake.received).toHaveLength(0);
    },
  );

  it('escapes a NUL in a denied recipient, which the denial details repeat', async () => {
    const d = await deniedCall('send_email', { to: [`eve${NUL}x@evil.com`], subject: 'x', text: 'y' });
    // The address fails validation (a NUL is not an email character), and the row still records it.
    expect(d.row).toMatchObject({ decision: 'denied', reason: d.failure.code });
    expect(JSON.stringify(d.row.request)).toContain('eve\\\\u0000x@evil.com');
  });

  it('admits an allowed call whose subject holds a NUL and settles it, escaping only the stored copy', async () => {
    const r = await settledRun(deps, key, 'send_email', {
      to: ['ann@acme.com'],
      subject: `a${NUL}b`,
      text: 'y',
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(fake.received).toHaveLength(1);
    expect(fake.received[0]?.body).toMatchObject({ subject: `a${NUL}b` });
    expect(await row(r.audit_id)).toMatchObject({
      decision: 'allowed',
      outcome: 'succeeded',
      request: { subject: 'a\\u0000b' },
    });
  });
});

describe('calls refused before policy', () => {
  it('writes a denied unknown_tool row for an authenticated key as tool other, with the name cleaned and capped in its request', async () => {
    const name = `drop_tables${NUL}${'x'.repeat(5000)}`;
    const d = await deniedCall(name, { to: 'eve@evil.com', [`k${NUL}`]: 'v\ud800' });
    expect(d.failure).toMatchObject({ code: 'unknown_tool', audit_id: d.row.id, retryable: false });
    expect(d.row).toMatchObject({
      decision: 'denied',
      reason: 'unknown_tool',
      key_id: keyId,
      agent: 'agent-1',
      vendor: null,
      tool: 'other',
      request: { arguments: { to: 'eve@evil.com', 'k\\u0000': 'v\ufffd' } },
    });
    const asked = (d.row.request as { name: string }).name;
    expect(asked.startsWith('drop_tables\\u0000xxx')).toBe(true);
    expect(asked.length).toBeLessThan(200);
    expect(d.failure.message.length).toBeLessThan(300);
    expect(d.event).toMatchObject({ type: 'denied', code: 'unknown_tool', key_id: keyId, tool: 'other' });
    expect(fake.received).toHaveLength(0);
  });

  it('answers an unauthenticated call to an unknown tool with key_invalid and its row', async () => {
    const r = await settledRun(deps, 'lsk_not_a_real_key', 'no_such_tool', {});
    expect(r).toMatchObject({ ok: false, failure: { code: 'key_invalid' } });
    const event = events.filter((e) => e.type !== 'finished').at(-1);
    expect(event).toMatchObject({ type: 'denied', code: 'key_invalid', tool: 'other' });
    expect(await row(event?.audit_id ?? null)).toMatchObject({
      decision: 'denied',
      reason: 'key_invalid',
      tool: 'other',
      request: { name: 'no_such_tool' },
      key_id: null,
    });
  });

  it('writes a denied invalid_input row with the arguments, each string capped and the full hash kept', async () => {
    const args = { to: ['ann@acme.com'], subject: 's'.repeat(5000), text: `t${NUL}` };
    const d = await deniedCall('send_email', args);
    expect(d.failure).toMatchObject({ code: 'invalid_input', audit_id: d.row.id });
    expect(d.failure.message).toContain('subject');
    expect(d.row).toMatchObject({ decision: 'denied', reason: 'invalid_input', tool: 'send_email' });
    const stored = d.row.request as Record<string, string>;
    expect(stored.subject?.length).toBeLessThan(2100);
    expect(stored.subject).toContain('[truncated, 5000 chars]');
    // The email body is sensitive: an invalid call keeps only its length and hash, never the text.
    expect(stored.text).toMatchObject({ redacted: true, length: 2, sha256: hmac(`t${NUL}`) });
    expect(d.row.metadata).toMatchObject({
      request_sanitized: true,
      args_sha256: sha256(args),
      denial: { issues: [expect.objectContaining({ field: 'subject' })] },
    });
    expect(d.event).toMatchObject({ type: 'denied', code: 'invalid_input' });
    expect(fake.received).toHaveLength(0);
  });

  it('stores a summary with the hash when the arguments are over 16 KB', async () => {
    const args = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`f${i}`, 'z'.repeat(1500)]));
    const d = await deniedCall('send_email', args);
    expect(d.failure.code).toBe('invalid_input');
    expect(d.row.request).toEqual({
      _truncated: true,
      bytes: Buffer.byteLength(canonicalJson(args)),
      sha256: sha256(args),
      keys: Object.keys(args).slice(0, 20),
    });
    const stored = JSON.stringify(d.row.request) + JSON.stringify(d.row.metadata);
    expect(Buffer.byteLength(stored)).toBeLessThan(16 * 1024);
  });

  it('wraps arguments that are not an object', async () => {
    const d = await deniedCall('send_email', ['a', NUL]);
    expect(d.row).toMatchObject({ reason: 'invalid_input', request: { _value: ['a', '\\u0000'] } });
  });
});

describe('fuzzed calls', () => {
  it('leaves exactly one row for every authenticated call, and never answers audit_unavailable', async () => {
    const CALLS = 400;
    const before = await count();
    const hostile = () => {
      const raw = randomBytes(24);
      let s = '';
      for (let i = 0; i < raw.length; i += 2)
        s += String.fromCharCode(((raw[i] ?? 0) << 8) | (raw[i + 1] ?? 0));
      return `${s}${NUL}${s.slice(0, 3)}\ud800`;
    };
    const shapes: (() => [string, unknown])[] = [
      () => ['send_email', { to: ['eve@evil.com'], subject: hostile(), text: hostile() }],
      () => ['send_email', { to: hostile(), subject: hostile() }],
      () => [hostile(), { [hostile()]: hostile() }],
      () => ['send_email', { [hostile()]: [hostile(), { deep: hostile() }] }],
      () => ['send_email', hostile()],
    ];
    const codes = new Map<string, number>();
    for (let i = 0; i < CALLS; i++) {
      const [tool, args] = shapes[i % shapes.length]?.() ?? ['send_email', {}];
      const r = await settledRun(deps, key, tool, args);
      const code = r.ok ? 'ok' : r.failure.code;
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (!r.ok) expect(r.failure.audit_id).not.toBeNull();
    }
    expect(codes.get('audit_unavailable')).toBeUndefined();
    expect(await count()).toBe(before + CALLS);
    expect(fake.received).toHaveLength(0);
    expect(events.filter((e) => e.type === 'denied')).toHaveLength(CALLS);
  });
});

/** What the audit log keeps of agent text: HMAC-SHA256 under the audit key. */
function hmac(text: string): string {
  return createHmac('sha256', AUDIT_KEY).update(text, 'utf8').digest('hex');
}

function sha256(v: unknown): string {
  return hmac(canonicalJson(v));
}
