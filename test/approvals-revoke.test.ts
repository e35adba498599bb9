// Covers revoke reaching approvals: revoking a key, its run or its agent (CLI, admin API, console) cancels its open
// approval requests in the same transaction (cancelled / key_revoked); the CLI, the admin API, the signed link and
// the console then refuse to approve them with that reason, and the pending lists drop them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRoutes } from '../src/admin/routes.js';
import { linkKey, linkUrl, mintLinkToken } from '../src/approvals/link.js';
import { approvalLinkRoutes } from '../src/approvals/link-routes.js';
import { claimUnannounced, decideApproval } from '../src/approvals/store.js';
import { createLogger } from '../src/config/logger.js';
import type { MintedKey } from '../src/keys/vault-keys.js';
import { createPipeline, runTool, type PipelineDeps } from '../src/pipeline/run-tool.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { decideFromConsole, overview, revokeFromConsole } from '../src/server/console/api.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { getApproval } from '../tools/leash/get-approval.js';
import { stripeVendor } from '../tools/stripe/client.js';
import { issueRefund } from '../tools/stripe/issue-refund.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';
import { cli } from './support/run-cli.js';

const ADMIN = 'admin-token-for-revoke-approvals-0123';
let tdb: TestDatabase;
let fake: StripeFake;
let deps: PipelineDeps;
let http: RunningHttp;
let env: Record<string, string>;
const signing = linkKey({ adminToken: ADMIN });
/** Signed link tokens by approval id, as the approval loop would have sent them. */
const tokens = new Map<string, string>();
const catalog: Catalog = {
  tools: new Map([issueRefund, getApproval].map((t) => [t.name, t])),
  vendors: new Map([['stripe', stripeVendor]]),
};

beforeAll(async () => {
  tdb = await freshDatabase(8);
  fake = await startStripeFake(false);
  const config = testConfig({
    STRIPE_SECRET_KEY: 'sk_test_canary_revoke_appr_1',
    LEASH_STRIPE_BASE_URL: fake.url,
    LEASH_ADMIN_TOKEN: ADMIN,
  });
  deps = createPipeline({
    db: tdb.db,
    config,
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'silent' }),
  });
  http = await startHttpServer(deps, {
    host: '127.0.0.1',
    port: 0,
    routes: [adminRoutes(deps, config), approvalLinkRoutes(tdb.db, signing)],
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'held',
    tools: { issue_refund: { approval: { above_usd: 100, expires: '30m' } } },
  });
  env = { DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent/leash-revoke-approvals', LEASH_LOG: 'silent' };
});

afterAll(async () => {
  await http.close();
  await fake.close();
  await tdb.close();
});

const admin = (path: string, init: RequestInit = {}) =>
  fetch(`${http.url}${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN}`, ...init.headers } });

/** A held refund of this key: its approval request's id, armed with a signed link. */
async function hold(key: MintedKey, amount: number): Promise<string> {
  const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
  const r = await runTool(deps, key.key, 'issue_refund', { payment_intent: p.payment_intent, amount });
  expect(r).toMatchObject({ ok: false, failure: { code: 'approval_required' } });
  const id = r.ok ? '' : String(r.failure.details?.approval_id);
  await claimUnannounced(tdb.db, (a) => {
    if (!signing) return undefined;
    const t = mintLinkToken(signing, a.id, a.expires_at);
    tokens.set(a.id, t.token);
    return t.hash;
  });
  expect(tokens.has(id)).toBe(true);
  return id;
}

const rowOf = (id: string) =>
  tdb.db.selectFrom('approvals').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

async function pendingIds(): Promise<string[]> {
  const r = await cli(['approvals', 'list', '--pending', '--json'], env);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { id: string }[]).map((a) => a.id);
}

const targets: { name: string; tag: string; revoke: (k: MintedKey) => Promise<void> }[] = [
  {
    name: 'a key, from the CLI',
    tag: 'key',
    async revoke(k) {
      const r = await cli(['keys', 'revoke', k.id], env);
      expect(r.code, r.stderr).toBe(0);
    },
  },
  {
    name: 'its run, from the admin API',
    tag: 'run',
    async revoke(k) {
      const r = await admin('/admin/revoke', { method: 'POST', body: JSON.stringify({ run_id: k.run_id }) });
      expect(r.status).toBe(200);
    },
  },
  {
    name: 'its agent, from the console',
    tag: 'agent',
    async revoke(k) {
      expect(
        await revokeFromConsole(tdb.db, { agent: k.agent }, undefined, { name: 'dana', via: 'console' }),
      ).toEqual([k.id]);
    },
  },
];

describe('revoke cancels approval requests', () => {
  it.each(targets)(
    'revoking $name cancels its pending and approved requests, and nothing can approve them after',
    async ({ tag, revoke }) => {
      const suffix = `${tag}-${Math.random().toString(36).slice(2, 8)}`;
      const key = await keyFor(tdb.db, { policy: 'held', agent: `agent-${suffix}`, runId: `run-${suffix}` });
      const bystander = await keyFor(tdb.db, {
        policy: 'held',
        agent: `other-${suffix}`,
        runId: `other-${suffix}`,
      });
      const pending = await hold(key, 15_000);
      const approved = await hold(key, 16_000);
      expect((await decideApproval(tdb.db, approved, 'approved', 'dana', 'ok')).ok).toBe(true);
      const untouched = await hold(bystander, 15_000);
      expect(await pendingIds()).toEqual(expect.arrayContaining([pending, untouched]));

      await revoke(key);

      for (const id of [pending, approved])
        expect(await rowOf(id)).toMatchObject({ status: 'cancelled', cancel_reason: 'key_revoked' });
      expect((await rowOf(pending)).cancelled_at).toBeInstanceOf(Date);
      expect(await rowOf(untouched)).toMatchObject({ status: 'pending', cancel_reason: null });

      // The pending lists (CLI, admin API, console) drop them; the other key's request stays.
      const listed = await pendingIds();
      expect(listed).toContain(untouched);
      expect(listed).not.toContain(pending);
      const api = (await (await admin('/admin/approvals?pending=1')).json()) as {
        approvals: { id: string }[];
      };
      expect(api.approvals.map((a) => a.id)).not.toContain(pending);
      const shown = (await overview(tdb.db, { approvals: true })).approvals.map((a) => a.id);
      expect(shown).toContain(untouched);
      expect(shown).not.toContain(pending);

      // CLI: refused with the reason, never "admitted once".
      const cliApprove = await cli(['approvals', 'approve', pending], env);
      expect(cliApprove.code).toBe(1);
      expect(cliApprove.stderr).toContain('key_revoked');
      expect(cliApprove.stdout).not.toContain('admitted once');
      const shownOne = await cli(['approvals', 'show', approved, '--json'], env);
      expect(JSON.parse(shownOne.stdout)).toMatchObject({
        status: 'cancelled',
        cancel_reason: 'key_revoked',
      });

      // Admin API.
      const viaApi = await admin(`/admin/approvals/${pending}/approve`, { method: 'POST' });
      expect(viaApi.status).toBe(409);
      expect(await viaApi.json()).toMatchObject({
        code: 'key_revoked',
        approval: { status: 'cancelled', cancel_reason: 'key_revoked' },
      });

      // The signed link from the alert: the page and the form both refuse.
      const url = linkUrl(http.url, pending, tokens.get(pending) ?? '');
      const page = await fetch(url);
      expect(page.status).toBe(410);
      expect(await page.text()).toContain('key_revoked');
      const form = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'decision=approve',
      });
      expect(form.status).toBe(410);
      expect(await form.text()).toContain('key_revoked');

      // Console.
      const viaConsole = await decideFromConsole(tdb.db, approved, 'approved', undefined, {
        name: 'dana',
        via: 'console',
      });
      expect(viaConsole.status).toBe(409);
      expect(JSON.stringify(viaConsole.body)).toContain('key_revoked');

      for (const id of [pending, approved]) expect((await rowOf(id)).status).toBe('cancelled');
      expect(fake.received.filter((r) => r.method === 'POST' && r.path === '/v1/refunds')).toHaveLength(0);
    },
  );

  it('leaves requests of other keys, and requests already closed, as they were', async () => {
    const key = await keyFor(tdb.db, { policy: 'held', agent: 'closed-agent', runId: 'closed-run' });
    const denied = await hold(key, 15_000);
    expect((await decideApproval(tdb.db, denied, 'denied', 'dana', 'no')).ok).toBe(true);
    const r = await cli(['keys', 'revoke', key.id], env);
    expect(r.code, r.stderr).toBe(0);
    expect(await rowOf(denied)).toMatchObject({ status: 'denied', cancel_reason: null, decided_by: 'dana' });
  });
});
