// Holds `leash policies test` and `leash policies replay` to the live pipeline: one recorded set of calls (partial and
// full refunds, refunds held for a person and one approved, refunds denied by limit, customer and currency, SMS and
// email) runs through the pipeline against the fake vendors under two policies, and the dry run and the replay must
// give each call the same decision, code and amount.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PipelineDeps, ToolCallResult } from '../src/pipeline/run-tool.js';
import { catalog } from '../tools/index.js';
import type { FakePayment } from '../tools/stripe/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import {
  applyTestPolicy,
  keyFor,
  pipelineFor,
  readAuditRow,
  settledRun,
  testConfig,
} from './support/governance.js';
import { cli } from './support/run-cli.js';
import { startVendors, type Vendors } from './support/vendors.js';

const FROM_SMS = '+15550001111';
const FROM_EMAIL = 'Support <s@acme.com>';

/** The policy the calls are recorded under: limits, a customer list, and a person for refunds over $30. */
const LIVE = {
  name: 'parity',
  limits: { daily_usd: 10_000 },
  tools: {
    issue_refund: {
      max_amount_usd: 100,
      customers: ['cus_bob', 'cus_amy'],
      approval: { above_usd: 30, expires: '30m' },
    },
    send_sms: { from: FROM_SMS, to_prefixes: ['+1'], max_segments: 2 },
    send_email: { from: FROM_EMAIL, to_domains: ['acme.com'], max_recipients: 2 },
  },
};
/** The candidate: a lower limit, a person only over $45, one more customer and country, emails always held. */
const NEXT = {
  name: 'parity-next',
  limits: { daily_usd: 10_000 },
  tools: {
    issue_refund: {
      max_amount_usd: 50,
      customers: ['cus_bob', 'cus_amy', 'cus_eve'],
      approval: { above_usd: 45, expires: '30m' },
    },
    send_sms: { from: FROM_SMS, to_prefixes: ['+1', '+44'], max_segments: 1 },
    send_email: {
      from: FROM_EMAIL,
      to_domains: ['acme.com', 'other.com'],
      max_recipients: 2,
      approval: { always: true },
    },
  },
};

type Payment = Partial<FakePayment> & { amount: number };

/** One recorded call: a tool and its arguments, and for refunds the payment the fake Stripe holds. */
interface Call {
  name: string;
  tool: string;
  payment?: Payment;
  /** The arguments, for the payment of this id (refunds). */
  args(paymentIntent?: string): Record<string, unknown>;
  /** Held, then approved by a person, then made again: the second call spends the approval. */
  approve?: boolean;
}

const refund = (name: string, payment: Payment, amount?: number, approve?: boolean): Call => ({
  name,
  tool: 'issue_refund',
  payment,
  args: (pi) => ({ payment_intent: pi, ...(amount === undefined ? {} : { amount }) }),
  ...(approve ? { approve } : {}),
});
const sms = (name: string, to: string, body: string): Call => ({
  name,
  tool: 'send_sms',
  args: () => ({ to, body }),
});
const email = (name: string, to: string[]): Call => ({
  name,
  tool: 'send_email',
  args: () => ({ to, subject: 'Your refund', text: 'It is on its way.' }),
});

const CALLS: Call[] = [
  refund('a partial $8 refund of a $150 payment', { customer: 'cus_bob', amount: 15_000 }, 800),
  refund('a full refund of a $25 payment', { customer: 'cus_amy', amount: 2_500 }),
  refund('a full refund of what is left of a $200 payment, $180 refunded before', {
    customer: 'cus_bob',
    amount: 20_000,
    amount_refunded: 18_000,
  }),
  refund(
    'a partial $40 refund (over the approval threshold)',
    { customer: 'cus_bob', amount: 15_000 },
    4_000,
  ),
  refund('a full refund of a $60 payment (over the approval threshold)', {
    customer: 'cus_amy',
    amount: 6_000,
  }),
  refund('a partial $45 refund a person approves', { customer: 'cus_bob', amount: 10_000 }, 4_500, true),
  refund('a partial $120 refund (over the limit)', { customer: 'cus_bob', amount: 15_000 }, 12_000),
  refund('a full refund of a $150 payment (over the limit)', { customer: 'cus_bob', amount: 15_000 }),
  refund("a $10 refund of another customer's payment", { customer: 'cus_eve', amount: 5_000 }, 1_000),
  refund('a full refund of a payment in euros (no rate)', {
    customer: 'cus_bob',
    amount: 2_000,
    currency: 'eur',
  }),
  sms('an SMS to a US number', '+15551234567', 'Your refund is on its way.'),
  sms('an SMS to a UK number', '+447700900123', 'Your refund is on its way.'),
  sms('a two-segment SMS', '+15551234567', 'x'.repeat(200)),
  sms('a four-segment SMS', '+15551234567', 'x'.repeat(500)),
  email('an email to acme.com', ['a@acme.com']),
  email('an email to other.com', ['x@other.com']),
  email('an email to three people', ['a@acme.com', 'b@acme.com', 'c@acme.com']),
];

/** What happened to one call, in the words both sides can give: decision, code, amount, USD. */
interface Outcome {
  decision: 'allowed' | 'held' | 'denied';
  code: string | null;
  amount: { minor: number; currency: string } | null;
  /** USD the call was (or would be) admitted at: allowed calls only. */
  usd_micros: number | null;
}

/** One live call's audit row, as it ended. */
interface Recorded {
  call: Call;
  id: string;
  /** The policy's verdict: an approved call was held by the rules, then let through by a person. */
  outcome: Outcome;
  approved: boolean;
  /** The USD the row was admitted at (what a candidate that denies it would have refused). */
  admitted: number;
}

let tdb: TestDatabase;
let vendors: Vendors;
let deps: PipelineDeps;
let home: string;
let env: Record<string, string>;
const files: Record<string, string> = {};
const recorded: Record<string, Recorded[]> = {};

const auditId = (r: ToolCallResult) => (r.ok ? r.audit_id : r.failure.audit_id);

async function outcomeOf(call: Call, id: string | null): Promise<Recorded> {
  const row = await readAuditRow(tdb.db, id);
  const meta = row.metadata as { approval?: { status?: string } }; // jsonb, as admission writes it
  const approved = row.decision === 'allowed' && meta.approval?.status === 'used';
  return {
    call,
    id: row.id,
    approved,
    admitted: Math.max(Number(row.usd_micros), Number(row.cost_micros) + Number(row.reserved_micros)),
    outcome: {
      decision: approved ? 'held' : row.decision,
      code:
        row.decision === 'denied'
          ? row.reason
          : row.decision === 'held' || approved
            ? 'approval_required'
            : null,
      amount: row.amount === null ? null : { minor: Number(row.amount), currency: row.currency ?? '' },
      usd_micros: row.decision === 'allowed' && !approved ? Number(row.usd_micros) : null,
    },
  };
}

/** Runs every call through the pipeline under `policy` with a key of its own; refunds each get a new payment. */
async function record(policy: string): Promise<Recorded[]> {
  const key = await keyFor(tdb.db, { policy, agent: `bot-${policy}` });
  const out: Recorded[] = [];
  for (const call of CALLS) {
    const payment = call.payment ? vendors.stripe.addPayment(call.payment) : undefined;
    const args = call.args(payment?.payment_intent);
    const first = await settledRun(deps, key.key, call.tool, args);
    out.push(await outcomeOf(call, auditId(first)));
    if (!call.approve) continue;
    if (!first.ok && first.failure.code === 'approval_required') {
      const { approval_id } = first.failure.details as { approval_id: string }; // approval_required's details
      const ok = await cli(['approvals', 'approve', approval_id, '--by', 'parity-test', '--json'], env);
      expect(ok.code, ok.stderr).toBe(0);
    }
    const again = await settledRun(deps, key.key, call.tool, args);
    out.push(await outcomeOf(call, auditId(again)));
  }
  return out;
}

/** The dry run's answer for one call under a policy file, in the same words as the live outcome. */
async function dryRun(file: string, call: Call): Promise<Outcome> {
  const p = call.payment;
  const facts = p
    ? {
        customer: p.customer ?? null,
        amount: { minor: p.amount, currency: p.currency ?? 'usd' },
        amount_refunded: p.amount_refunded ?? 0,
      }
    : undefined;
  // Any payment id will do: the dry run looks nothing up, it is told the payment in "facts".
  const args = call.args('pi_dry_run');
  const r = await cli(
    [
      'policies',
      'test',
      file,
      '--call',
      JSON.stringify({ tool: call.tool, args, ...(facts ? { facts } : {}) }),
      '--json',
    ],
    env,
  );
  // The dry run's --json answer (README: Policy dry-run and replay).
  const v = JSON.parse(r.stdout) as {
    decision: 'allow' | 'deny' | 'undecidable';
    code?: string;
    amount: Outcome['amount'];
    estimated_cost_micros?: number;
    approval_required?: unknown;
  };
  expect(r.code, `${call.name}: ${r.stdout}${r.stderr}`).toBe(v.decision === 'deny' ? 1 : 0);
  const held = v.decision === 'allow' && v.approval_required !== null;
  return {
    decision: v.decision === 'deny' ? 'denied' : held ? 'held' : 'allowed',
    code: v.decision === 'deny' ? (v.code ?? null) : held ? 'approval_required' : null,
    amount: v.amount,
    usd_micros: v.decision === 'allow' && !held ? (v.estimated_cost_micros ?? null) : null,
  };
}

beforeAll(async () => {
  tdb = await freshDatabase(8);
  vendors = await startVendors();
  deps = pipelineFor(tdb.db, catalog, testConfig(vendors.env));
  home = await mkdtemp(join(tmpdir(), 'leash-parity-'));
  env = { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' };
  for (const doc of [LIVE, NEXT]) {
    await applyTestPolicy(tdb.db, catalog, doc);
    files[doc.name] = join(home, `${doc.name}.json`);
    await writeFile(files[doc.name]!, JSON.stringify(doc));
  }
  vendors.reset();
  recorded[LIVE.name] = await record(LIVE.name);
  recorded[NEXT.name] = await record(NEXT.name);
});

afterAll(async () => {
  await deps.settler.flush();
  await vendors.close();
  await tdb.close();
  await rm(home, { recursive: true, force: true });
});

const live = (policy: string) => recorded[policy] ?? [];

/** The recorded set is what this file says it is: every kind of call, and only admitted ones reached a vendor. */
function expectTheRecordedSet(): void {
  const all = [...live(LIVE.name), ...live(NEXT.name)];
  const allowed = (tool: string) =>
    all.filter((r) => r.call.tool === tool && (r.outcome.decision === 'allowed' || r.approved)).length;
  expect(vendors.stripe.received.filter((r) => r.method === 'POST' && r.path === '/v1/refunds')).toHaveLength(
    allowed('issue_refund'),
  );
  expect(vendors.twilio.received.filter((r) => r.method === 'POST')).toHaveLength(allowed('send_sms'));
  expect(vendors.resend.received.filter((r) => r.method === 'POST')).toHaveLength(allowed('send_email'));
  const codes = live(LIVE.name).map((r) => (r.approved ? 'approved' : (r.outcome.code ?? 'allowed')));
  expect(new Set(codes)).toEqual(
    new Set([
      'allowed',
      'approval_required',
      'approved',
      'amount_over_limit',
      'customer_not_allowed',
      'currency_not_supported',
      'recipient_not_allowed',
      'too_many_segments',
      'too_many_recipients',
    ]),
  );
  // The partial refund moved its own $8, not the payment's $150.
  expect(live(LIVE.name)[0]?.outcome).toMatchObject({
    decision: 'allowed',
    amount: { minor: 800, currency: 'usd' },
    usd_micros: 8_000_000,
  });
}

describe('leash policies test', () => {
  it.each([LIVE.name, NEXT.name])(
    'gives every call the decision, code and amount the pipeline gave it under %s',
    async (policy) => {
      expectTheRecordedSet();
      for (const r of live(policy)) {
        // The dry run knows nothing of approvals given: it says a call is held, as the rules did.
        expect(await dryRun(files[policy]!, r.call), r.call.name).toEqual(r.outcome);
      }
    },
  );
});

describe('leash policies replay', () => {
  interface Report {
    rows: number;
    replayed: number;
    unchanged: number;
    not_replayed: number;
    undecidable: number;
    now_allowed: number;
    now_held: number;
    now_denied: number;
    usd_refused_micros: number;
    decisions: { allowed: number; held: number; denied: number; denied_by_code: Record<string, number> };
    changes: { id: string; was: string; now: string }[];
  }
  const replay = async (file: string) => {
    const r = await cli(['policies', 'replay', file, '--policy', LIVE.name, '--json'], env);
    return { code: r.code, report: JSON.parse(r.stdout) as Report };
  };
  const tally = (rows: Recorded[]) => {
    const denied_by_code: Record<string, number> = {};
    for (const r of rows)
      if (r.outcome.decision === 'denied')
        denied_by_code[r.outcome.code!] = (denied_by_code[r.outcome.code!] ?? 0) + 1;
    const count = (d: string) => rows.filter((r) => r.outcome.decision === d).length;
    return { allowed: count('allowed'), held: count('held'), denied: count('denied'), denied_by_code };
  };

  it('replays every recorded call, held ones too, and the policy they ran under changes none', async () => {
    const { code, report } = await replay(files[LIVE.name]!);
    const rows = live(LIVE.name);
    expect(code).toBe(0);
    expect(report).toMatchObject({
      rows: rows.length,
      replayed: rows.length,
      unchanged: rows.length,
      not_replayed: 0,
      undecidable: 0,
      now_allowed: 0,
      now_held: 0,
      now_denied: 0,
      decisions: tally(rows),
    });
  });

  it('says of each call what the candidate policy decided when the same call was made under it', async () => {
    const { code, report } = await replay(files[NEXT.name]!);
    const before = live(LIVE.name);
    const after = live(NEXT.name);
    expect(code).toBe(1);
    expect(report.decisions).toEqual(tally(after));
    const changed = new Map(report.changes.map((c) => [c.id, c]));
    let usdRefused = 0;
    before.forEach((was, i) => {
      const now = after[i]!;
      expect(now.call, was.call.name).toBe(was.call);
      const change = changed.get(was.id);
      const label = now.outcome.decision === 'denied' ? now.outcome.code : now.outcome.decision;
      if (was.outcome.decision === now.outcome.decision) {
        expect(change, was.call.name).toBeUndefined();
        return;
      }
      expect(change?.now, was.call.name).toBe(label);
      expect(change?.was, was.call.name).toBe(
        was.approved
          ? 'approved'
          : was.outcome.decision === 'denied'
            ? was.outcome.code
            : was.outcome.decision,
      );
      if (now.outcome.decision === 'denied') usdRefused += was.admitted;
    });
    const moved = (from: string[], to: string) =>
      before.filter(
        (b, i) =>
          from.includes(b.outcome.decision) && after[i]!.outcome.decision === to && b.outcome.decision !== to,
      ).length;
    expect(report).toMatchObject({
      replayed: before.length,
      now_allowed: moved(['held', 'denied'], 'allowed'),
      now_held: moved(['allowed', 'denied'], 'held'),
      now_denied: moved(['allowed', 'held'], 'denied'),
      usd_refused_micros: usdRefused,
    });
    // Each kind of change happened at least once in this set.
    expect([report.now_allowed, report.now_held, report.now_denied].every((n) => n > 0)).toBe(true);
  });
});
