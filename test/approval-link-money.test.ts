// Covers how the signed approval link's page reads money: the USD value alone for a USD call, and the vendor's own
// amount beside it (as money in its currency, never raw minor units) when the call moves another currency.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkKey, linkUrl, mintLinkToken } from '../src/approvals/link.js';
import { approvalLinkRoutes } from '../src/approvals/link-routes.js';
import { claimUnannounced } from '../src/approvals/store.js';
import { createLogger } from '../src/config/logger.js';
import { createPipeline, runTool, type PipelineDeps } from '../src/pipeline/run-tool.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { stripeVendor } from '../tools/stripe/client.js';
import { issueRefund } from '../tools/stripe/issue-refund.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';

const ADMIN = 'admin-token-for-link-money-0123456789';
let tdb: TestDatabase;
let fake: StripeFake;
let deps: PipelineDeps;
let http: RunningHttp;
let home: string;
const key = linkKey({ adminToken: ADMIN });
const catalog: Catalog = {
  tools: new Map([issueRefund].map((t) => [t.name, t])),
  vendors: new Map([['stripe', stripeVendor]]),
};

beforeAll(async () => {
  tdb = await freshDatabase(4);
  fake = await startStripeFake(false);
  home = await mkdtemp(join(tmpdir(), 'leash-link-money-'));
  // A euro rate, so a refund in euros is admitted (held) rather than refused for want of one.
  const file = join(home, 'config.json');
  await writeFile(file, JSON.stringify({ fx_rates: { EUR: 1.25 } }));
  const config = testConfig({
    STRIPE_SECRET_KEY: 'sk_test_link_money_1',
    LEASH_STRIPE_BASE_URL: fake.url,
    LEASH_ADMIN_TOKEN: ADMIN,
    LEASH_CONFIG: file,
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
    routes: [approvalLinkRoutes(tdb.db, key)],
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'held-refunds',
    tools: { issue_refund: { approval: { always: true, expires: '30m' } } },
  });
});

afterAll(async () => {
  await http?.close();
  await fake?.close();
  await tdb?.close();
  await rm(home, { recursive: true, force: true });
});

/** Holds a refund of `amount` minor units of `currency`, and answers its approval page's text. */
async function pageOf(amount: number, currency: string): Promise<string> {
  const p = fake.addPayment({ customer: 'cus_A', amount: 50_000, currency });
  const k = await keyFor(tdb.db, { policy: 'held-refunds' });
  const r = await runTool(deps, k.key, 'issue_refund', { payment_intent: p.payment_intent, amount });
  expect(r).toMatchObject({ ok: false, failure: { code: 'approval_required' } });
  const id = r.ok ? '' : String(r.failure.details?.approval_id);
  // Armed with a link as the approval loop arms it before announcing the request.
  const tokens = new Map<string, string>();
  if (!key) throw new Error('no link key');
  await claimUnannounced(tdb.db, (row) => {
    const t = mintLinkToken(key, row.id, row.expires_at);
    tokens.set(row.id, t.token);
    return t.hash;
  });
  const res = await fetch(linkUrl(http.url, id, tokens.get(id) ?? ''));
  expect(res.status).toBe(200);
  return res.text();
}

/** The page's Amount line. */
const amountOf = (html: string) => /<dt>Amount<\/dt><dd>([^<]*)<\/dd>/.exec(html)?.[1];

describe('the approval link page', () => {
  it('shows a USD amount as dollars alone, without minor units', async () => {
    const html = await pageOf(4000, 'usd');
    expect(amountOf(html)).toBe('$40.00');
    expect(html).not.toContain('minor units');
  });

  it('shows the USD value and the vendor’s own amount as money for another currency', async () => {
    const html = await pageOf(3680, 'eur');
    // €36.80 at 1.25 USD per euro.
    expect(amountOf(html)).toBe('$46.00 (€36.80)');
    expect(html).not.toContain('minor units');
  });
});
