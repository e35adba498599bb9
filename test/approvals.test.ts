// Covers approvals through the pipeline: a refund over the threshold is held, approved by the CLI and admitted once
// (under concurrency too), bound to its exact arguments, still under the daily cap; denial and expiry.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PipelineDeps, PipelineEvent, ToolCallResult } from '../src/pipeline/run-tool.js';
import { runTool } from '../src/pipeline/run-tool.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { toolsForPolicy } from '../src/server/tool-list.js';
import { compilePolicy, validatePolicy } from '../src/policy/compile.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { getApproval } from '../tools/leash/get-approval.js';
import { getBudget } from '../tools/leash/get-budget.js';
import { stripeVendor } from '../tools/stripe/client.js';
import { getPayment } from '../tools/stripe/get-payment.js';
import { issueRefund } from '../tools/stripe/issue-refund.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, pipelineFor, settledRun, testConfig } from './support/governance.js';
import { cli } from './support/run-cli.js';

let tdb: TestDatabase;
let fake: StripeFake;
let deps: PipelineDeps;
let env: Record<string, string>;
/** What the pipeline told its subscribers (metrics, the call log, alerts). */
const events: PipelineEvent[] = [];
const catalog: Catalog = {
  tools: new Map([issueRefund, getPayment, getBudget, getApproval].map((t) => [t.name, t])),
  vendors: new Map([['stripe', stripeVendor]]),
};
const POLICY = {
  name: 'held-refunds',
  limits: { daily_usd: 400 },
  tools: { issue_refund: { approval: { above_usd: 100, expires: '30m' } }, get_payment: null },
};

beforeAll(async () => {
  tdb = await freshDatabase(16);
  fake = await startStripeFake(false);
  const config = testConfig({
    STRIPE_SECRET_KEY: 'sk_test_canary_approvals_1',
    LEASH_STRIPE_BASE_URL: fake.url,
  });
  deps = { ...pipelineFor(tdb.db, catalog, config), onEvent: (e) => void events.push(e) };
  await applyTestPolicy(tdb.db, catalog, POLICY);
  env = { DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent/leash-approvals', LEASH_LOG: 'silent' };
});

afterAll(async () => {
  await fake.close();
  await tdb.close();
});

beforeEach(() => {
  fake.received.length = 0;
});

const refunds = () => fake.received.filter((r) => r.method === 'POST' && r.path === '/v1/refunds');

function approvalOf(r: ToolCallResult): { approval_id: string; expires_at: string } {
  expect(r.ok, JSON.stringify(r)).toBe(false);
  if (r.ok) throw new Error('admitted');
  expect(r.failure).toMatchObject({ code: 'approval_required', retryable: true });
  return r.failure.details as { approval_id: string; expires_at: string };
}

async function status(key: string, id: string) {
  const r = await runTool(deps, key, 'get_approval', { approval_id: id });
  return r.ok ? r.output.status : r.failure.code;
}

async function cliJson(args: string[]) {
  const r = await cli([...args, '--json'], env);
  return { ...r, body: r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined };
}

describe('approvals', () => {
  it('holds a $150 refund under above_usd 100: nothing is refunded, the row is held and get_approval says pending', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 20_000 });
    const key = await keyFor(tdb.db, { policy: 'held-refunds' });
    const r = await runTool(deps, key.key, 'issue_refund', {
      payment_intent: p.payment_intent,
      amount: 15_000,
    });
    const { approval_id, expires_at } = approvalOf(r);
    expect(new Date(expires_at).getTime()).toBeGreaterThan(Date.now() + 29 * 60_000);
    if (!r.ok) expect(r.failure.message).toContain('same arguments');
    expect(refunds()).toHaveLength(0);
    const row = await tdb.db
      .selectFrom('audit_log')
      .selectAll()
      .where('id', '=', r.ok ? '' : (r.failure.audit_id ?? ''))
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ decision: 'held', reason: 'approval_required', reserved_micros: 0 });
    // Metrics and the call log see it as held too, not as a denial.
    expect(events.find((e) => e.type === 'finished' && e.audit_id === row.id)).toMatchObject({
      decision: 'held',
      code: 'approval_required',
    });
    expect(await status(key.key, approval_id)).toBe('pending');
    // Asking again with the same arguments while it waits is the same request, not a new one.
    const again = approvalOf(
      await runTool(deps, key.key, 'issue_refund', { payment_intent: p.payment_intent, amount: 15_000 }),
    );
    expect(again.approval_id).toBe(approval_id);
    // A refund at or under the threshold is not held.
    expect(
      (await settledRun(deps, key.key, 'issue_refund', { payment_intent: p.payment_intent, amount: 10_000 }))
        .ok,
    ).toBe(true);
  });

  it('lists get_approval for a policy with an approval rule', () => {
    const policy = compilePolicy(validatePolicy(POLICY, ruleSpecs(catalog)), 1);
    expect(toolsForPolicy(catalog, policy).map((t) => t.name)).toContain('get_approval');
  });

  it('after approval by the CLI admits the identical retry once, then holds the next identical retry again', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
    const key = await keyFor(tdb.db, { policy: 'held-refunds' });
    const args = { payment_intent: p.payment_intent, amount: 15_000 };
    const { approval_id } = approvalOf(await runTool(deps, key.key, 'issue_refund', args));

    const pending = await cliJson(['approvals', 'list', '--pending']);
    expect(pending.code).toBe(0);
    expect((pending.body as unknown as { id: string }[]).map((a) => a.id)).toContain(approval_id);
    const ok = await cliJson([
      'approvals',
      'approve',
      approval_id,
      '--note',
      'customer called',
      '--by',
      'alice',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.body).toMatchObject({ status: 'approved', decided_by: 'alice', note: 'customer called' });
    expect(await status(key.key, approval_id)).toBe('approved');
    // Deciding twice changes nothing.
    expect((await cli(['approvals', 'deny', approval_id], env)).code).toBe(1);

    const admitted = await settledRun(deps, key.key, 'issue_refund', args);
    expect(admitted.ok, JSON.stringify(admitted)).toBe(true);
    expect(refunds()).toHaveLength(1);
    expect(await status(key.key, approval_id)).toBe('used');
    const used = await tdb.db
      .selectFrom('approvals')
      .selectAll()
      .where('id', '=', approval_id)
      .executeTakeFirstOrThrow();
    expect(used).toMatchObject({ status: 'used', used_by_audit_id: admitted.ok ? admitted.audit_id : '' });
    const row = await tdb.db
      .selectFrom('audit_log')
      .select(['decision', 'metadata'])
      .where('id', '=', admitted.ok ? admitted.audit_id : '')
      .executeTakeFirstOrThrow();
    expect(row.metadata).toMatchObject({
      approval: { id: approval_id, decided_by: 'alice', note: 'customer called' },
    });

    const next = approvalOf(await runTool(deps, key.key, 'issue_refund', args));
    expect(next.approval_id).not.toBe(approval_id);
    expect(refunds()).toHaveLength(1);

    // Who approved, when and why: in audit query (the held row and the admitted one) and in the tail.
    const query = await cli(['audit', 'query', '--key', key.id, '--wide'], env);
    expect(query.stdout).toContain('approved by alice');
    expect(query.stdout).toContain('customer called');
    const held = await cliJson(['audit', 'query', '--key', key.id, '--decision', 'held']);
    const heldRows = held.body as unknown as { decision: string; approval: { id: string; status: string } }[];
    expect(heldRows.find((r) => r.approval.id === approval_id)).toMatchObject({
      decision: 'held',
      approval: { status: 'approved' },
    });
    const tail = await cli(['audit', 'tail', '-n', '10', '--run', 'run-1'], env);
    expect(tail.stdout).toMatch(/allowed .* approved by alice at \S+: customer called/);

    const shown = await cliJson(['approvals', 'show', approval_id]);
    expect(shown.body).toMatchObject({ status: 'used', decided_by: 'alice' });
    expect((await cli(['approvals', 'show', '00000000-0000-4000-8000-000000000000'], env)).code).toBe(3);
    expect((await cli(['approvals', 'approve'], env)).code).toBe(2);
  });

  it('admits exactly one of 10 concurrent identical retries after one approval', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
    const key = await keyFor(tdb.db, { policy: 'held-refunds' });
    const args = { payment_intent: p.payment_intent, amount: 12_000 };
    const { approval_id } = approvalOf(await runTool(deps, key.key, 'issue_refund', args));
    expect((await cli(['approvals', 'approve', approval_id], env)).code).toBe(0);
    fake.received.length = 0;
    const results = await Promise.all(
      Array.from({ length: 10 }, () => runTool(deps, key.key, 'issue_refund', args)),
    );
    await deps.settler.flush();
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok && r.failure.code === 'approval_required')).toHaveLength(9);
    expect(refunds()).toHaveLength(1);
    // The nine that lost share one new request.
    const ids = new Set(results.flatMap((r) => (r.ok ? [] : [String(r.failure.details?.approval_id)])));
    expect(ids.size).toBe(1);
    expect(ids.has(approval_id)).toBe(false);
  });

  it('does not let an approval admit a call with other arguments, or another key', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
    const key = await keyFor(tdb.db, { policy: 'held-refunds' });
    const other = await keyFor(tdb.db, { policy: 'held-refunds' });
    const { approval_id } = approvalOf(
      await runTool(deps, key.key, 'issue_refund', { payment_intent: p.payment_intent, amount: 15_000 }),
    );
    expect((await cli(['approvals', 'approve', approval_id], env)).code).toBe(0);
    const changed = approvalOf(
      await runTool(deps, key.key, 'issue_refund', { payment_intent: p.payment_intent, amount: 15_001 }),
    );
    expect(changed.approval_id).not.toBe(approval_id);
    const otherKey = approvalOf(
      await runTool(deps, other.key, 'issue_refund', { payment_intent: p.payment_intent, amount: 15_000 }),
    );
    expect(otherKey.approval_id).not.toBe(approval_id);
    expect(refunds()).toHaveLength(0);
    // get_approval shows a key only its own requests.
    const foreign = await runTool(deps, other.key, 'get_approval', { approval_id });
    expect(foreign).toMatchObject({ ok: false, failure: { code: 'approval_not_found', retryable: false } });
    expect(await status(key.key, approval_id)).toBe('approved');
  });

  it('still refuses an approved call that would break the daily cap, and keeps the approval unused', async () => {
    await applyTestPolicy(tdb.db, catalog, { ...POLICY, name: 'held-capped', limits: { daily_usd: 200 } });
    const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
    const key = await keyFor(tdb.db, { policy: 'held-capped' });
    expect(
      (await settledRun(deps, key.key, 'issue_refund', { payment_intent: p.payment_intent, amount: 9_000 }))
        .ok,
    ).toBe(true);
    const args = { payment_intent: p.payment_intent, amount: 15_000 };
    const { approval_id } = approvalOf(await runTool(deps, key.key, 'issue_refund', args));
    expect((await cli(['approvals', 'approve', approval_id], env)).code).toBe(0);
    const r = await runTool(deps, key.key, 'issue_refund', args);
    expect(r).toMatchObject({ ok: false, failure: { code: 'budget_exceeded' } });
    expect(refunds()).toHaveLength(1);
    expect(await status(key.key, approval_id)).toBe('approved');
  });

  it('refuses approval_denied after a denial, and approval_expired once after expiry', async () => {
    const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
    const key = await keyFor(tdb.db, { policy: 'held-refunds' });
    const args = { payment_intent: p.payment_intent, amount: 13_000 };
    const { approval_id } = approvalOf(await runTool(deps, key.key, 'issue_refund', args));
    expect((await cli(['approvals', 'deny', approval_id, '--note', 'not this one'], env)).code).toBe(0);
    const denied = await runTool(deps, key.key, 'issue_refund', args);
    expect(denied).toMatchObject({ ok: false, failure: { code: 'approval_denied', retryable: false } });
    if (!denied.ok) expect(denied.failure.message).toContain('not this one');
    expect(await status(key.key, approval_id)).toBe('denied');

    const args2 = { payment_intent: p.payment_intent, amount: 14_000 };
    const second = approvalOf(await runTool(deps, key.key, 'issue_refund', args2));
    await tdb.pool.query(`update approvals set expires_at = now() - interval '1 second' where id = $1`, [
      second.approval_id,
    ]);
    expect(await status(key.key, second.approval_id)).toBe('expired');
    const late = await cli(['approvals', 'approve', second.approval_id], env);
    expect(late.code).toBe(1);
    expect(late.stderr).toContain('expired');
    expect(await runTool(deps, key.key, 'issue_refund', args2)).toMatchObject({
      ok: false,
      failure: { code: 'approval_expired' },
    });
    // Told once: the next identical call opens a new request.
    const fresh = approvalOf(await runTool(deps, key.key, 'issue_refund', args2));
    expect(fresh.approval_id).not.toBe(second.approval_id);
    expect(refunds()).toHaveLength(0);
  });
});
