// Covers the console showing paused keys and resuming them (issue 27), in a real browser: a key trips its `burst`
// tripwire (refused tripwire_tripped, then key_paused), the operator signs in, the key's row says Paused with the wire
// and its figures, Resume plus a confirmation naming the key resumes it (recorded under the operator's name, shown in
// the Recent operator actions panel), and the key's next call is admitted; a key stopped by its run's pause says who
// paused the run and why, and Resume names the run; the resume route refuses a request without the session's CSRF
// token and a scope of the wrong shape; and axe passes on the row with the badge, light and dark.
import { createRequire } from 'node:module';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/config/logger.js';
import { activePause, pause } from '../../src/keys/pauses.js';
import {
  createPipeline,
  runTool,
  type PipelineDeps,
  type ToolCallResult,
} from '../../src/pipeline/run-tool.js';
import { consoleRoutes } from '../../src/server/console/routes.js';
import { startHttpServer, type RunningHttp } from '../../src/server/http.js';
import { catalog } from '../../tools/index.js';
import { freshDatabase, type TestDatabase } from '../support/database.js';
import { applyTestPolicy, keyFor, testConfig } from '../support/governance.js';
import { cli } from '../support/run-cli.js';
import { startVendors, type Vendors } from '../support/vendors.js';
import { launchChromium, screenshot } from './browser.js';

const ADMIN_TOKEN = 'paused-console-admin-token-0123456789';
/** How long the page may take to show what a test waits for: generous, for a busy machine. */
const WAIT_MS = 15_000;
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const EMAIL = { from: 'Support <support@acme.com>', to_domains: ['acme.com'] };

let tdb: TestDatabase;
let vendors: Vendors;
let deps: PipelineDeps;
let http: RunningHttp;
let web: ReturnType<typeof consoleRoutes>;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** The operator `rosa`'s token, as `leash operators add` printed it. */
let rosa = '';

const code = (r: ToolCallResult) => (r.ok ? 'ok' : r.failure.code);
let mailSerial = 0;
const email = () => ({ to: [`pat${++mailSerial}@acme.com`], subject: 'order', text: 'Your order shipped.' });

/** axe-core's violations under `selector` (every rule it runs by default, or only `rules`), as "rule: target". */
const violations = async (selector: string, rules?: string[]): Promise<string[]> =>
  JSON.parse(
    String(
      await page.evaluate(`axe.run(${JSON.stringify(selector)}, ${JSON.stringify(rules ? { runOnly: rules } : {})})
        .then((r) => JSON.stringify(r.violations.flatMap((v) => v.nodes.map((n) => v.id + ': ' + n.target.join(' ')))))`),
    ),
  ) as string[];

/** The newest row of the actions panel that holds `text`, its cells read as one line. */
const actionText = async (text: string) =>
  (
    await page
      .locator('#actions-table tbody tr')
      .filter({ hasText: text })
      .first()
      .innerText({ timeout: WAIT_MS })
  )
    .replace(/\s+/g, ' ')
    .trim();

/** POSTs to the console's resume route from the signed-in page (its cookie, this origin), with or without CSRF. */
const postResume = (body: unknown, csrf = true) =>
  page.evaluate<{ status: number; body: { error?: string; resumed?: boolean } }>(
    `fetch('/console/api/resume', {
       method: 'POST',
       headers: Object.assign({ 'content-type': 'application/json' },
         ${csrf} ? { 'x-leash-csrf': document.querySelector('meta[name="leash-csrf"]').content } : {}),
       body: ${JSON.stringify(JSON.stringify(body))},
     }).then(async (r) => ({ status: r.status, body: await r.json() }))`,
  );

beforeAll(async () => {
  tdb = await freshDatabase(8);
  vendors = await startVendors();
  const env = { DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent/leash-test-home', LEASH_LOG: 'silent' };
  const config = testConfig({ ...vendors.env, LEASH_ADMIN_TOKEN: ADMIN_TOKEN });
  deps = createPipeline({
    db: tdb.db,
    config,
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'silent' }),
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'wired',
    tools: { send_email: EMAIL },
    tripwires: [{ name: 'burst', when: { calls_per_minute: 2 }, then: 'pause' }],
  });
  await applyTestPolicy(tdb.db, catalog, { name: 'calm', tools: { send_email: EMAIL } });
  const added = await cli(['operators', 'add', 'rosa'], env);
  expect(added.code, added.stderr).toBe(0);
  rosa = added.stdout.trim();
  web = consoleRoutes({ db: tdb.db, config });
  http = await startHttpServer(deps, { host: '127.0.0.1', port: 0, routes: [web] });
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // axe-core: an init script, which the page's CSP does not apply to.
  await context.addInitScript({ path: AXE });
  page = await context.newPage();
  await page.goto(`${http.url}/console`);
  await page.fill('#token', rosa);
  await page.click('#signin button[type=submit]');
  await page.locator('#status[data-state="live"]').waitFor({ timeout: WAIT_MS });
});

afterAll(async () => {
  await context?.close();
  await browser?.close();
  web?.close();
  await deps?.settler.flush();
  await http?.close();
  await vendors?.close();
  await tdb?.close();
});

describe('a key its tripwire paused', () => {
  it('shows Paused with the wire, resumes from the row as rosa, and the next call is admitted', async () => {
    const key = await keyFor(tdb.db, { policy: 'wired', agent: 'looper', runId: 'loop-1' });
    const codes: string[] = [];
    // Calls until the wire trips and the pause refuses the next (a safety bound ends a test that never trips).
    for (let i = 0; i < 10 && codes.at(-1) !== 'key_paused'; i++)
      codes.push(code(await runTool(deps, key.key, 'send_email', email())));
    expect(codes).toEqual(['ok', 'ok', 'tripwire_tripped', 'key_paused']);

    const row = page.locator(`#agents-table tr[data-key-id="${key.id}"]`);
    await row.locator('.badge.paused').waitFor({ timeout: WAIT_MS });
    await expect(row.getAttribute('data-paused')).resolves.toBe('key');
    await expect(row.locator('.badge.paused').textContent()).resolves.toBe('Paused');
    await expect(row.locator('.pause-why').textContent()).resolves.toBe('tripwire burst: 3 calls/min > 2');
    await screenshot(page, 'console-paused-row');

    // axe on the row with the badge: every default rule, then colour contrast light and dark.
    const selector = `#agents-table tr[data-key-id="${key.id}"]`;
    expect(await violations(selector)).toEqual([]);
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      expect(await violations(selector, ['color-contrast']), scheme).toEqual([]);
    }
    await page.emulateMedia({ colorScheme: null });

    // One click, then a confirmation naming the key; Cancel first leaves it paused.
    await row.locator('button[data-resume="key"]').click();
    const dialog = page.locator('#resume-confirm');
    await dialog.waitFor({ state: 'visible' });
    await expect(page.locator('#resume-text').textContent()).resolves.toContain(`Resume key ${key.id}?`);
    await dialog.locator('button[value="cancel"]').click();
    await dialog.waitFor({ state: 'hidden' });
    expect(await activePause(tdb.db, { kind: 'key', id: key.id })).toBeDefined();

    await row.locator('button[data-resume="key"]').click();
    await dialog.waitFor({ state: 'visible' });
    await page.click('#resume-go');
    await dialog.waitFor({ state: 'hidden', timeout: WAIT_MS });
    await row.locator('.badge.paused').waitFor({ state: 'detached', timeout: WAIT_MS });
    expect(await row.getAttribute('data-paused')).toBeNull();
    expect(await row.locator('button[data-resume]').count()).toBe(0);

    const { rows } = await tdb.pool.query<{ resumed_by: string | null }>(
      `select resumed_by from pauses where scope_kind = 'key' and scope = $1`,
      [key.id],
    );
    expect(rows).toEqual([{ resumed_by: 'rosa' }]);
    expect(code(await runTool(deps, key.key, 'send_email', email()))).toBe('ok');

    await expect
      .poll(() => actionText(`key ${key.id}`), { timeout: WAIT_MS })
      .toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d rosa resumed key ${key.id} tripwire burst console$`));
  });
});

describe('a key its run’s pause stops', () => {
  it('says who paused the run and why, and Resume names the run', async () => {
    const key = await keyFor(tdb.db, { policy: 'calm', agent: 'helper', runId: 'night-9' });
    await pause(tdb.db, { kind: 'run', id: 'night-9' }, { name: 'alice', via: 'cli' }, 'incident 7');
    expect(code(await runTool(deps, key.key, 'send_email', email()))).toBe('key_paused');

    const row = page.locator(`#agents-table tr[data-key-id="${key.id}"]`);
    await row.locator('.badge.paused').waitFor({ timeout: WAIT_MS });
    await expect(row.locator('.pause-why').textContent()).resolves.toBe(
      'paused by alice: incident 7 (run "night-9" is paused)',
    );
    await row.locator('button[data-resume="run"]').click();
    await page.locator('#resume-confirm').waitFor({ state: 'visible' });
    await expect(page.locator('#resume-text').textContent()).resolves.toContain('Resume run "night-9"?');
    await page.click('#resume-go');
    await row.locator('.badge.paused').waitFor({ state: 'detached', timeout: WAIT_MS });
    expect(await activePause(tdb.db, { kind: 'run', id: 'night-9' })).toBeUndefined();
    expect(code(await runTool(deps, key.key, 'send_email', email()))).toBe('ok');
  });
});

describe('the resume route', () => {
  it('refuses a request without the CSRF token, and leaves the pause in place', async () => {
    const key = await keyFor(tdb.db, { policy: 'calm', agent: 'guarded' });
    await pause(tdb.db, { kind: 'key', id: key.id }, 'test');
    const r = await postResume({ key_id: key.id }, false);
    expect(r).toEqual({ status: 403, body: { error: 'cross-site request refused' } });
    expect(await activePause(tdb.db, { kind: 'key', id: key.id })).toBeDefined();
    expect(await postResume({ key_id: key.id })).toMatchObject({ status: 200, body: { resumed: true } });
    expect(await postResume({ key_id: key.id })).toMatchObject({ status: 200, body: { resumed: false } });
  });

  it('refuses a bad scope naming the field', async () => {
    const wrongShape = await postResume({ key_id: 'NOT-A-KEY' });
    expect(wrongShape.status).toBe(400);
    expect(wrongShape.body.error).toMatch(/^key id must be/);
    const two = await postResume({ key_id: 'aaaaaaaaaaaa', agent: 'x' });
    expect(two.status).toBe(400);
    expect(two.body.error).toContain('give exactly one of key_id, run_id, agent or policy');
    const extra = await postResume({ scope: 'key:aaaaaaaaaaaa' });
    expect(extra.status).toBe(400);
    expect(extra.body.error).toMatch(/scope/);
    const long = await postResume({ agent: 'a'.repeat(201) });
    expect(long.status).toBe(400);
    expect(long.body.error).toMatch(/agent/);
  });
});
