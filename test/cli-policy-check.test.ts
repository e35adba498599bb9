// Covers `leash policies test` (one call decided against a policy file, nothing written) and `leash policies replay`
// (a candidate policy over the audit log, held calls too: now denied by code with the USD, now held, now allowed,
// undecidable, not replayed). test/dry-run-parity.test.ts holds both to what the live pipeline decides.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Insertable } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditLogTable } from '../src/db/schema.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { cli } from './support/run-cli.js';

let tdb: TestDatabase;
let home: string;
let env: Record<string, string>;
const leash = (...argv: string[]) => cli(argv, env);

const CURRENT = `name: refunds
limits: { daily_usd: 1000 }
tools:
  issue_refund: { max_amount_usd: 100 }
  send_email: { from: 'Support <s@acme.com>', to_domains: [acme.com] }
  get_budget: {}
`;
// Tighter refunds (a customer list, a lower limit), looser email (other.com too).
const CANDIDATE = `name: refunds
limits: { daily_usd: 1000 }
tools:
  issue_refund: { max_amount_usd: 50, customers: [cus_A] }
  send_email: { from: 'Support <s@acme.com>', to_domains: [acme.com, other.com] }
  get_budget: {}
`;
let current: string;
let candidate: string;

type Seed = Partial<Insertable<AuditLogTable>> & { tool: string; decision: 'allowed' | 'held' | 'denied' };
const HOUR = 3_600_000;

function row(s: Seed): Insertable<AuditLogTable> {
  return {
    id: randomUUID(),
    ts: new Date(Date.now() - HOUR),
    agent: 'bot',
    policy: 'refunds',
    policy_version: 1,
    outcome: s.decision === 'denied' ? 'none' : 'succeeded',
    reserved_micros: 0,
    cost_micros: 0,
    cost_status: s.decision === 'denied' ? 'none' : 'settled',
    budget: '[]',
    metadata: '{}',
    sandbox: false,
    ...s,
  };
}

const refund = (usd: number, extra: Partial<Seed> = {}): Seed => ({
  tool: 'issue_refund',
  decision: 'allowed',
  amount: usd * 100,
  currency: 'usd',
  cost_micros: usd * 1_000_000,
  usd_micros: usd * 1_000_000,
  request: JSON.stringify({ payment_intent: 'pi_1' }),
  ...extra,
});
const facts = (customer: string, usd: number) =>
  JSON.stringify({ facts: { customer, amount: { minor: usd * 100, currency: 'usd' } } });

beforeAll(async () => {
  tdb = await freshDatabase(2);
  home = await mkdtemp(join(tmpdir(), 'leash-check-'));
  env = { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' };
  current = join(home, 'current.yaml');
  candidate = join(home, 'candidate.yaml');
  await writeFile(current, CURRENT);
  await writeFile(candidate, CANDIDATE);
  expect((await leash('policies', 'apply', current)).code).toBe(0);
  await tdb.db
    .insertInto('audit_log')
    .values(
      (
        [
          // Allowed at $60: over the candidate's $50 limit → now denied, $60 refused.
          refund(60, { metadata: facts('cus_A', 60) }),
          // Allowed at $20 for cus_A: still allowed.
          refund(20, { metadata: facts('cus_A', 20) }),
          // Denied at $150 (over $100): still denied.
          refund(150, {
            decision: 'denied',
            reason: 'amount_over_limit',
            cost_micros: 0,
            usd_micros: 0,
            metadata: facts('cus_A', 150),
          }),
          // Allowed at $10, but the row does not say whose payment it was: the customer rule cannot be decided.
          refund(10),
          // Email to other.com was refused; the candidate allows it (facts come from the stored request).
          {
            tool: 'send_email',
            decision: 'denied',
            reason: 'recipient_not_allowed',
            request: JSON.stringify({ to: ['x@other.com'], subject: 'hi', text_length: 2 }),
          },
          // Refused before policy: a revoked key. No policy changes that.
          { tool: 'issue_refund', decision: 'denied', reason: 'key_revoked' },
          // Another policy, and a call older than --since: not part of the replay.
          refund(500, { policy: 'other' }),
          refund(500, { ts: new Date(Date.now() - 30 * 24 * HOUR) }),
        ] satisfies Seed[]
      ).map(row),
    )
    .execute();
});

afterAll(async () => {
  await tdb.close();
  await rm(home, { recursive: true, force: true });
});

describe('leash policies test', () => {
  it('allows a call the policy allows, with the amount, and writes nothing', async () => {
    const before = await tdb.pool.query('select count(*)::int as n from audit_log');
    const r = await leash(
      'policies',
      'test',
      current,
      '--call',
      '{"tool":"issue_refund","args":{"payment_intent":"pi_1"},"facts":{"amount":{"minor":4000,"currency":"usd"}}}',
      '--json',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      decision: 'allow',
      amount_micros: 40_000_000,
      policy: 'refunds',
    });
    const after = await tdb.pool.query('select count(*)::int as n from audit_log');
    expect(after.rows).toEqual(before.rows);
  });

  it('says a call would be held for approval above the threshold', async () => {
    const held = join(home, 'held.yaml');
    await writeFile(
      held,
      'name: refunds\ntools:\n  issue_refund: { max_amount_usd: 500, approval: { above_usd: 100, expires: 30m } }\n',
    );
    const call = (cents: number) =>
      `{"tool":"issue_refund","args":{"payment_intent":"pi_1"},"facts":{"amount":{"minor":${cents},"currency":"usd"}}}`;
    const over = await leash('policies', 'test', held, '--call', call(15_000), '--json');
    expect(over.code, over.stderr).toBe(0);
    expect(JSON.parse(over.stdout)).toMatchObject({
      decision: 'allow',
      approval_required: { expires_seconds: 1800 },
    });
    const text = await leash('policies', 'test', held, '--call', call(15_000));
    expect(text.stdout).toMatch(
      /^held: issue_refund under policy 'refunds' \(amount \$150\.00\)\n {2}a person must approve this exact call first; the approval is good for 1800s\n/,
    );
    expect(Math.max(...text.stdout.split('\n').map((l) => l.length))).toBeLessThanOrEqual(80);
    const under = await leash('policies', 'test', held, '--call', call(5_000), '--json');
    expect(JSON.parse(under.stdout)).toMatchObject({ decision: 'allow', approval_required: null });
  });

  it('denies with the code and reason, exit 1', async () => {
    const r = await leash(
      'policies',
      'test',
      candidate,
      '--call',
      '{"tool":"issue_refund","args":{"payment_intent":"pi_1"},"facts":{"customer":"cus_Z","amount":{"minor":1000,"currency":"usd"}}}',
    );
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      "deny customer_not_allowed: customer cus_Z is not on this policy's customer list",
    );
    const email = await leash(
      'policies',
      'test',
      current,
      '--call',
      '{"tool":"send_email","args":{"to":["a@evil.com"],"subject":"s","text":"t"}}',
      '--json',
    );
    expect(JSON.parse(email.stdout)).toMatchObject({ decision: 'deny', code: 'recipient_not_allowed' });
    const tool = await leash('policies', 'test', current, '--call', '{"tool":"send_sms","args":{}}');
    expect([tool.code, tool.stdout]).toEqual([
      1,
      "deny tool_not_allowed: policy 'refunds' does not allow send_sms\n",
    ]);
    const input = await leash(
      'policies',
      'test',
      current,
      '--call',
      '{"tool":"issue_refund","args":{}}',
      '--json',
    );
    expect(JSON.parse(input.stdout)).toMatchObject({ decision: 'deny', code: 'invalid_input' });
  });

  it('says what facts to give when a rule needs what the tool looks up at the vendor (exit 2)', async () => {
    const r = await leash(
      'policies',
      'test',
      candidate,
      '--call',
      '{"tool":"issue_refund","args":{"payment_intent":"pi_1"}}',
    );
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('undecidable');
    expect(r.stdout).toContain('max_amount_usd, customers');
  });

  it('prices a refund from its own amount, not the payment total, and a full refund from what is refundable', async () => {
    // The call from issue 26: a $5 refund of a $150 payment is a $5 refund, under a $100 limit.
    const partial = await leash(
      'policies',
      'test',
      current,
      '--call',
      '{"tool":"issue_refund","args":{"payment_intent":"pi_1","amount":500},"facts":{"customer":"cus_sandbox_bob","amount":{"minor":15000,"currency":"usd"}}}',
      '--json',
    );
    expect(partial.code, partial.stdout).toBe(0);
    expect(JSON.parse(partial.stdout)).toMatchObject({
      decision: 'allow',
      amount: { minor: 500, currency: 'usd' },
      amount_micros: 5_000_000,
      estimated_cost_micros: 5_000_000,
    });
    // No amount: all that is still refundable, $150 less the $90 already refunded.
    const full = (refunded: number) =>
      leash(
        'policies',
        'test',
        current,
        '--call',
        `{"tool":"issue_refund","args":{"payment_intent":"pi_1"},"facts":{"amount":{"minor":15000,"currency":"usd"},"amount_refunded":${refunded}}}`,
        '--json',
      );
    const rest = await full(9_000);
    expect(rest.code, rest.stdout).toBe(0);
    expect(JSON.parse(rest.stdout)).toMatchObject({ amount: { minor: 6_000 }, amount_micros: 60_000_000 });
    const whole = await full(0);
    expect([whole.code, JSON.parse(whole.stdout)]).toMatchObject([
      1,
      { decision: 'deny', code: 'amount_over_limit', amount: { minor: 15_000, currency: 'usd' } },
    ]);
    const text = await leash(
      'policies',
      'test',
      current,
      '--call',
      '{"tool":"issue_refund","args":{"payment_intent":"pi_1","amount":500},"facts":{"amount":{"minor":15000,"currency":"usd"}}}',
    );
    expect(text.stdout).toContain("allow: issue_refund under policy 'refunds' (amount $5.00)\n");
  });

  it('refuses facts a tool does not look up, and malformed facts, naming the field (exit 2)', async () => {
    const email = await leash(
      'policies',
      'test',
      current,
      '--call',
      '{"tool":"send_email","args":{"to":["a@acme.com"],"subject":"s","text":"t"},"facts":{"customer":"cus_A"}}',
    );
    expect([email.code, email.stderr]).toEqual([
      2,
      expect.stringContaining('send_email looks nothing up at the vendor'),
    ]);
    const bad = await leash(
      'policies',
      'test',
      current,
      '--call',
      '{"tool":"issue_refund","args":{"payment_intent":"pi_1"},"facts":{"amount":{"minor":100,"currency":"usd"},"amount_refunded":500}}',
    );
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining('facts.amount_refunded')]);
    const odd = await leash(
      'policies',
      'test',
      current,
      '--call',
      '{"tool":"issue_refund","args":{"payment_intent":"pi_1"},"facts":{"amount":{"minor":"lots","currency":"usd"}}}',
    );
    expect([odd.code, odd.stderr]).toEqual([2, expect.stringContaining('facts.amount.minor')]);
    const extra = await leash('policies', 'test', current, '--call', '{"tool":"get_budget","fact":{}}');
    expect([extra.code, extra.stderr]).toEqual([2, expect.stringContaining('not "fact"')]);
  });

  it('cannot decide a refund without the payment amount, even when no rule caps it (exit 2)', async () => {
    const open = join(home, 'open.yaml');
    await writeFile(open, 'name: open\ntools:\n  issue_refund: {}\n');
    const r = await leash(
      'policies',
      'test',
      open,
      '--call',
      '{"tool":"issue_refund","args":{"payment_intent":"pi_1","amount":500},"facts":{"customer":"cus_A"}}',
      '--json',
    );
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({ decision: 'undecidable', facts_needed: ['amount'] });
  });

  it('decides as a key would: a revoked key is refused', async () => {
    const k = JSON.parse(
      (await leash('keys', 'create', '--agent', 'bot', '--policy', 'refunds', '--expires-in', '1h', '--json'))
        .stdout,
    ) as { id: string };
    await leash('keys', 'revoke', k.id);
    const r = await leash(
      'policies',
      'test',
      current,
      '--call',
      '{"tool":"get_budget"}',
      '--as-key',
      k.id,
      '--json',
    );
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ decision: 'deny', code: 'key_revoked', key: { id: k.id } });
  });
});

describe('leash policies replay', () => {
  it('reports calls now denied by code with the USD refused, calls now allowed, and rows it cannot decide', async () => {
    const r = await leash('policies', 'replay', candidate, '--since', '7d', '--json');
    expect(r.code, r.stderr).toBe(1);
    const report = JSON.parse(r.stdout) as Record<string, unknown> & {
      changes: { was: string; now: string }[];
    };
    expect(report).toMatchObject({
      policy: 'refunds',
      rows: 6,
      replayed: 4,
      unchanged: 2,
      now_denied: 1,
      now_denied_by_code: { amount_over_limit: 1 },
      usd_refused_micros: 60_000_000,
      now_allowed: 1,
      now_allowed_by_code: { recipient_not_allowed: 1 },
      undecidable: 1,
      undecidable_by_rule: { customers: 1 },
      not_replayed: 1,
    });
    expect(report.changes.map((c) => [c.was, c.now])).toEqual(
      expect.arrayContaining([
        ['allowed', 'amount_over_limit'],
        ['recipient_not_allowed', 'allowed'],
      ]),
    );
    const text = await leash('policies', 'replay', candidate);
    expect(text.stdout).toMatch(/now denied\s+1\s+\(\$60\.00 would have been refused; amount_over_limit 1\)/);
    expect(text.stdout.replace(/\s+/g, ' ')).toContain(
      'caps, request limits and the loop guard are decided at admission',
    );
  });

  it('narrows by agent, exits 0 when nothing would change, and leaves the ledger alone', async () => {
    const windows = await tdb.pool.query('select * from spend_windows');
    const same = await leash('policies', 'replay', current, '--json');
    expect(same.code, same.stderr).toBe(0);
    expect(JSON.parse(same.stdout)).toMatchObject({ now_denied: 0, now_allowed: 0 });
    const nobody = await leash('policies', 'replay', candidate, '--agent', 'nobody', '--json');
    expect(JSON.parse(nobody.stdout)).toMatchObject({ rows: 0 });
    expect((await tdb.pool.query('select * from spend_windows')).rows).toEqual(windows.rows);
  });
});

describe('leash policies replay of held calls', () => {
  const HELD = `name: held
tools:
  issue_refund: { max_amount_usd: 100, approval: { above_usd: 30, expires: 30m } }
`;
  const held = (usd: number, extra: Partial<Seed>): Seed =>
    refund(usd, { policy: 'held', agent: 'held-bot', metadata: facts('cus_A', usd), ...extra });
  let file: string;
  const candidate = async (name: string, text: string) => {
    const path = join(home, name);
    await writeFile(path, text);
    return path;
  };

  beforeAll(async () => {
    file = await candidate('held.yaml', HELD);
    await tdb.db
      .insertInto('audit_log')
      .values(
        (
          [
            // $20: under the threshold, allowed outright.
            held(20, {}),
            // $40: held for a person, who has not answered.
            held(40, {
              decision: 'held',
              reason: 'approval_required',
              cost_micros: 0,
              usd_micros: 0,
              metadata: JSON.stringify({
                facts: { customer: 'cus_A', amount: { minor: 4_000, currency: 'usd' } },
                approval: { id: randomUUID(), status: 'pending' },
              }),
            }),
            // $45: held, approved, then admitted by spending the approval.
            held(45, {
              metadata: JSON.stringify({
                facts: { customer: 'cus_A', amount: { minor: 4_500, currency: 'usd' } },
                approval: { id: randomUUID(), status: 'used', decided_by: 'alice' },
              }),
            }),
            // $50: held, and a person said no.
            held(50, { decision: 'denied', reason: 'approval_denied', cost_micros: 0, usd_micros: 0 }),
            // $150: over the limit.
            held(150, { decision: 'denied', reason: 'amount_over_limit', cost_micros: 0, usd_micros: 0 }),
          ] satisfies Seed[]
        ).map(row),
      )
      .execute();
  });

  it('replays held and approved calls: the same policy changes nothing', async () => {
    const r = await leash('policies', 'replay', file, '--json');
    expect(r.code, r.stdout).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      rows: 5,
      replayed: 5,
      unchanged: 5,
      not_replayed: 0,
      now_allowed: 0,
      now_held: 0,
      now_denied: 0,
      decisions: { allowed: 1, held: 3, denied: 1, denied_by_code: { amount_over_limit: 1 } },
    });
  });

  it('without the approval rule, the held, approved and person-denied calls are now allowed', async () => {
    const none = await candidate(
      'held-none.yaml',
      'name: held\ntools:\n  issue_refund: { max_amount_usd: 100 }\n',
    );
    const r = await leash('policies', 'replay', none, '--json');
    expect(r.code, r.stdout).toBe(1);
    const report = JSON.parse(r.stdout) as { changes: { was: string; now: string }[] };
    expect(report).toMatchObject({
      replayed: 5,
      now_allowed: 3,
      now_allowed_by_code: { held: 1, approved: 1, approval_denied: 1 },
      now_held: 0,
      now_denied: 0,
      unchanged: 2,
      decisions: { allowed: 4, held: 0, denied: 1 },
    });
    expect(report.changes.map((c) => [c.was, c.now]).sort()).toEqual([
      ['approval_denied', 'allowed'],
      ['approved', 'allowed'],
      ['held', 'allowed'],
    ]);
    const text = await leash('policies', 'replay', none);
    expect(text.stdout).toMatch(/now allowed\s+3\s+\(were approval_denied 1, approved 1, held 1;/);
    expect(text.stdout).toContain(
      'in all, the candidate allows 4, holds 0 and denies 1 (amount_over_limit 1)',
    );
    // The report fits 80 columns; the table of changes below it shows every column when piped.
    const lines = text.stdout.slice(0, text.stdout.indexOf('changes:'));
    expect(Math.max(...lines.split('\n').map((l) => l.length))).toBeLessThanOrEqual(80);
  });

  it('a lower threshold holds calls once allowed; a lower limit denies held ones', async () => {
    const tight = await candidate(
      'held-tight.yaml',
      'name: held\ntools:\n  issue_refund: { max_amount_usd: 42, approval: { above_usd: 10, expires: 30m } }\n',
    );
    const r = await leash('policies', 'replay', tight, '--json');
    expect(r.code, r.stdout).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      now_held: 1,
      now_held_by_code: { allowed: 1 },
      // The approved $45 refund (spent) and the $50 one a person refused.
      now_denied: 2,
      now_denied_by_code: { amount_over_limit: 2 },
      usd_refused_micros: 45_000_000,
      now_allowed: 0,
      unchanged: 2,
      decisions: { allowed: 0, held: 2, denied: 3 },
    });
    const text = await leash('policies', 'replay', tight);
    expect(text.stdout).toMatch(/now held\s+1\s+\(were allowed 1; a person must approve\)/);
  });
});
