// Covers approving over HTTP: the alert's one-time signed link (page, replay, tampering, expiry, cross-site POST),
// the admin API, and the approval_requested / approval_expired alerts, on a real `leash serve`-style server.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startAlerts, type Alerts } from '../src/admin/alerts.js';
import { adminRoutes } from '../src/admin/routes.js';
import { linkKey } from '../src/approvals/link.js';
import { approvalLinkRoutes } from '../src/approvals/link-routes.js';
import { startApprovalLoop, type ApprovalLoop } from '../src/approvals/loop.js';
import { createLogger } from '../src/config/logger.js';
import { createPipeline, runTool, type PipelineDeps, type ToolCallResult } from '../src/pipeline/run-tool.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { sendJson, startRecordingServer, type RecordingServer } from '../src/vendor-kit/fake-server.js';
import { getApproval } from '../tools/leash/get-approval.js';
import { stripeVendor } from '../tools/stripe/client.js';
import { issueRefund } from '../tools/stripe/issue-refund.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';

const ADMIN = 'admin-token-for-approvals-0123456789';
let tdb: TestDatabase;
let fake: StripeFake;
let hook: RecordingServer;
let alerts: Alerts;
let deps: PipelineDeps;
let http: RunningHttp;
let loop: ApprovalLoop;
const catalog: Catalog = {
  tools: new Map([issueRefund, getApproval].map((t) => [t.name, t])),
  vendors: new Map([['stripe', stripeVendor]]),
};

beforeAll(async () => {
  tdb = await freshDatabase(8);
  fake = await startStripeFake(false);
  hook = await startRecordingServer((_req, res) => sendJson(res, 200, { ok: true }));
  const config = testConfig({
    STRIPE_SECRET_KEY: 'sk_test_canary_links_1',
    LEASH_STRIPE_BASE_URL: fake.url,
    LEASH_ADMIN_TOKEN: ADMIN,
    LEASH_ALERT_WEBHOOK_URL: `${hook.url}/hook`,
  });
  const log = createLogger({ logLevel: 'silent' });
  alerts = startAlerts({ config, log });
  deps = createPipeline({ db: tdb.db, config, catalog, sandbox: false, log, onEvent: alerts.onEvent });
  const key = linkKey({ adminToken: ADMIN });
  http = await startHttpServer(deps, {
    host: '127.0.0.1',
    port: 0,
    routes: [adminRoutes(deps, config, alerts), approvalLinkRoutes(tdb.db, key)],
  });
  loop = startApprovalLoop({
    db: tdb.db,
    log,
    notify: alerts.notify,
    announce: true,
    baseUrl: http.url,
    linkKey: key,
    everyMs: 60_000,
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'linked',
    tools: { issue_refund: { approval: { above_usd: 100, expires: '30m' } } },
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'short',
    tools: { issue_refund: { approval: { always: true, expires: '2s' } } },
  });
});

afterAll(async () => {
  await loop.stop();
  await http.close();
  await alerts.close();
  await hook.close();
  await fake.close();
  await tdb.close();
});

type Alert = { type: string; approval_id: string; url?: string | null; usd_micros: number };
const alertsOf = (type: string): Alert[] =>
  hook.received.map((r) => (JSON.parse(r.body) as { event: Alert }).event).filter((e) => e.type === type);

async function held(policy: string, amount: number) {
  const p = fake.addPayment({ customer: 'cus_A', amount: 50_000 });
  const key = await keyFor(tdb.db, { policy });
  const args = { payment_intent: p.payment_intent, amount };
  const r: ToolCallResult = await runTool(deps, key.key, 'issue_refund', args);
  expect(r).toMatchObject({ ok: false, failure: { code: 'approval_required' } });
  const id = r.ok ? '' : String(r.failure.details?.approval_id);
  loop.kick();
  await waitFor(() => alertsOf('approval_requested').some((a) => a.approval_id === id));
  const url = alertsOf('approval_requested').find((a) => a.approval_id === id)?.url ?? '';
  return { id, url, key: key.key, args };
}

async function waitFor(ok: () => boolean, ms = 30_000) {
  const until = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
    await alerts.drain(1_000);
  }
}

const post = (url: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
    redirect: 'manual',
  });

/** The refunds Stripe was asked for by the running test. */
const refunds = () => fake.received.filter((r) => r.method === 'POST' && r.path === '/v1/refunds');
beforeEach(() => {
  fake.received.length = 0;
});
const statusOf = async (id: string) =>
  (await tdb.db.selectFrom('approvals').select('status').where('id', '=', id).executeTakeFirstOrThrow())
    .status;

describe('approval links', () => {
  it('announces the request with a signed link whose page shows the call and changes nothing; approving works once', async () => {
    const h = await held('linked', 15_000);
    expect(h.url).toMatch(new RegExp(`^${http.url}/approvals/${h.id}\\?t=`));
    expect(alertsOf('approval_requested').find((a) => a.approval_id === h.id)?.usd_micros).toBe(150_000_000);

    const page = await fetch(h.url);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const html = await page.text();
    expect(html).toContain('Approve this call?');
    expect(html).toContain('$150.00');
    expect(await statusOf(h.id)).toBe('pending');

    const ok = await post(h.url, { decision: 'approve', by: 'Dana', note: 'ok <b>' }, { origin: http.url });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain('Approved');
    const row = await tdb.db
      .selectFrom('approvals')
      .selectAll()
      .where('id', '=', h.id)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      status: 'approved',
      decided_by: 'Dana (signed link)',
      note: 'ok <b>',
      link_nonce_hash: null,
    });

    // Replayed: the link is spent.
    expect((await post(h.url, { decision: 'deny' }, { origin: http.url })).status).toBe(410);
    expect((await fetch(h.url)).status).toBe(410);

    const first = await runTool(deps, h.key, 'issue_refund', h.args);
    expect(first.ok, JSON.stringify(first)).toBe(true);
    expect(await runTool(deps, h.key, 'issue_refund', h.args)).toMatchObject({
      ok: false,
      failure: { code: 'approval_required' },
    });
    await deps.settler.flush();
    expect(refunds()).toHaveLength(1);
  });

  it('refuses a tampered link, another request’s token and a cross-site POST, deciding nothing', async () => {
    const a = await held('linked', 16_000);
    const b = await held('linked', 17_000);
    const token = new URL(a.url).searchParams.get('t') ?? '';
    const flipped = token.slice(0, -2) + (token.at(-2) === 'A' ? 'B' : 'A') + token.at(-1);
    const tampered = `${http.url}/approvals/${a.id}?t=${encodeURIComponent(flipped)}`;
    expect((await fetch(tampered)).status).toBe(403);
    expect((await post(tampered, { decision: 'approve' })).status).toBe(403);
    // b's token on a's request.
    const swapped = `${http.url}/approvals/${a.id}?t=${encodeURIComponent(new URL(b.url).searchParams.get('t') ?? '')}`;
    expect((await post(swapped, { decision: 'approve' })).status).toBe(403);
    expect((await post(a.url, { decision: 'approve' }, { origin: 'https://evil.example' })).status).toBe(403);
    expect((await post(a.url, { decision: 'approve' }, { 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    expect(await statusOf(a.id)).toBe('pending');
    // The genuine link still works, once.
    expect((await post(a.url, { decision: 'deny', note: 'no' })).status).toBe(200);
    expect(await runTool(deps, a.key, 'issue_refund', a.args)).toMatchObject({
      ok: false,
      failure: { code: 'approval_denied' },
    });
    expect(refunds()).toHaveLength(0);
  });

  it('cannot approve an expired request, and alerts approval_expired once', async () => {
    const h = await held('short', 1_000);
    await new Promise((r) => setTimeout(r, 2_100));
    const r = await post(h.url, { decision: 'approve' });
    expect(r.status).toBe(410);
    expect(await r.text()).toContain('expired');
    loop.kick();
    await waitFor(() => alertsOf('approval_expired').some((a) => a.approval_id === h.id));
    expect(await statusOf(h.id)).toBe('expired');
    expect(await runTool(deps, h.key, 'issue_refund', h.args)).toMatchObject({
      ok: false,
      failure: { code: 'approval_expired' },
    });
    loop.kick();
    await new Promise((r) => setTimeout(r, 100));
    await alerts.drain(1_000);
    expect(alertsOf('approval_expired').filter((a) => a.approval_id === h.id)).toHaveLength(1);
  });
});

describe('admin API', () => {
  const admin = (path: string, init: RequestInit = {}) =>
    fetch(`${http.url}${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN}`, ...init.headers } });

  it('lists pending requests and approves one, recording who and why; refuses a second decision', async () => {
    const h = await held('linked', 18_000);
    expect((await fetch(`${http.url}/admin/approvals`)).status).toBe(401);
    const list = (await (await admin('/admin/approvals?pending=1')).json()) as {
      approvals: { id: string }[];
    };
    expect(list.approvals.map((a) => a.id)).toContain(h.id);
    const ok = await admin(`/admin/approvals/${h.id}/approve`, {
      method: 'POST',
      body: JSON.stringify({ note: 'fine', by: 'ops-bot' }),
    });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({
      // The admin token records `admin`; a `by` in the body only follows it.
      approval: { status: 'approved', decided_by: 'admin (ops-bot)', note: 'fine' },
    });
    expect((await admin(`/admin/approvals/${h.id}/deny`, { method: 'POST' })).status).toBe(409);
    expect(
      (await admin(`/admin/approvals/00000000-0000-4000-8000-000000000000/deny`, { method: 'POST' })).status,
    ).toBe(404);
    // The held row shows the decision in the audit API.
    const audit = (await (await admin(`/admin/audit?decision=held`)).json()) as {
      rows: { approval?: { id: string; decided_by: string } | null }[];
    };
    expect(audit.rows.find((r) => r.approval?.id === h.id)?.approval).toMatchObject({
      decided_by: 'admin (ops-bot)',
    });
    expect((await runTool(deps, h.key, 'issue_refund', h.args)).ok).toBe(true);
  });
});
