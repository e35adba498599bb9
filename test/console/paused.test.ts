// Covers the console showing paused keys and resuming them (issue 27), in a real browser: a key trips its `burst`
// tripwire (refused tripwire_tripped, then key_paused), the operator signs in, the key's row says Paused with the wire
// and its figures, Resume plus a confirmation naming the key resumes it (recorded under the operator's name, shown in
// the Recent operator actions panel), and the key's next call is admitted; a key stopped by its run's pause says who
// paused the run and why, and Resume names the run; the resume route refuses a request without the session's CSRF
// token and a scope of the wrong shape; and axe passes on the row with the badge, light and dark.
import type { Page } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { activePause, pause } from '../../src/keys/pauses.js';
import { runTool, type ToolCallResult } from '../../src/pipeline/run-tool.js';
import { keyFor } from '../support/governance.js';
import { cli } from '../support/run-cli.js';
import { screenshot } from './browser.js';
import { useConsoleServer } from './fixture.js';

/** How long the page may take to show what a test waits for: generous, for a busy machine. */
const WAIT_MS = 15_000;
const EMAIL = { from: 'Support <support@acme.com>', to_domains: ['acme.com'] };

/** The operator `rosa`'s token, as `leash operators add` printed it. */
let rosa = '';
const leash = useConsoleServer({
  adminToken: 'paused-console-admin-token-0123456789',
  poolMax: 8,
  policies: [
    {
      name: 'wired',
      tools: { send_email: EMAIL },
      tripwires: [{ name: 'burst', when: { calls_per_minute: 2 }, then: 'pause' }],
    },
    { name: 'calm', tools: { send_email: EMAIL } },
  ],
  prepare: async ({ tdb }) => {
    const env = { DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent/leash-test-home', LEASH_LOG: 'silent' };
    const added = await cli(['operators', 'add', 'rosa'], env);
    expect(added.code, added.stderr).toBe(0);
    rosa = added.stdout.trim();
  },
});
let page: Page;

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
  // One page for the whole file, signed in as rosa (the fixture closes it).
  ({ page } = await leash.signedIn({ token: rosa, axe: true }));
});

describe('a key its tripwire paused', () => {
  it('shows Paused with the wire, resumes from the row as rosa, and the next call is admitted', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'wired', agent: 'looper', runId: 'loop-1' });
    const codes: string[] = [];
    // Calls until the wire trips and the pause refuses the next (a safety bound ends a test that never trips).
    for (let i = 0; i < 10 && codes.at(-1) !== 'key_paused'; i++)
      codes.push(code(await runTool(leash.deps, key.key, 'send_email', email())));
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
    expect(await activePause(leash.tdb.db, { kind: 'key', id: key.id })).toBeDefined();

    await row.locator('button[data-resume="key"]').click();
    await dialog.waitFor({ state: 'visible' });
    await page.click('#resume-go');
    await dialog.waitFor({ state: 'hidden', timeout: WAIT_MS });
    await row.locator('.badge.paused').waitFor({ state: 'detached', timeout: WAIT_MS });
    expect(await row.getAttribute('data-paused')).toBeNull();
    expect(await row.locator('button[data-resume]').count()).toBe(0);

    const { rows } = await leash.tdb.pool.query<{ resumed_by: string | null }>(
      `select resumed_by from pauses where scope_kind = 'key' and scope = $1`,
      [key.id],
    );
    expect(rows).toEqual([{ resumed_by: 'rosa' }]);
    expect(code(await runTool(leash.deps, key.key, 'send_email', email()))).toBe('ok');

    await expect
      .poll(() => actionText(`key ${key.id}`), { timeout: WAIT_MS })
      .toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d rosa resumed key ${key.id} tripwire burst console$`));
  });
});

describe('a key its run’s pause stops', () => {
  it('says who paused the run and why, and Resume names the run', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'calm', agent: 'helper', runId: 'night-9' });
    await pause(leash.tdb.db, { kind: 'run', id: 'night-9' }, { name: 'alice', via: 'cli' }, 'incident 7');
    expect(code(await runTool(leash.deps, key.key, 'send_email', email()))).toBe('key_paused');

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
    expect(await activePause(leash.tdb.db, { kind: 'run', id: 'night-9' })).toBeUndefined();
    expect(code(await runTool(leash.deps, key.key, 'send_email', email()))).toBe('ok');
  });
});

describe('the resume route', () => {
  it('refuses a request without the CSRF token, and leaves the pause in place', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'calm', agent: 'guarded' });
    await pause(leash.tdb.db, { kind: 'key', id: key.id }, 'test');
    const r = await postResume({ key_id: key.id }, false);
    expect(r).toEqual({ status: 403, body: { error: 'cross-site request refused' } });
    expect(await activePause(leash.tdb.db, { kind: 'key', id: key.id })).toBeDefined();
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
