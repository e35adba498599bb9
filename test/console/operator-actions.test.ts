// Covers the console saying who acts, in a real browser: the sign-in form takes an operator token or the admin token,
// the header names who is signed in ("admin (break-glass token)" for the admin token), and the Recent operator
// actions panel shows a revoke and an approval made here under the operator's name (and the approval's decided_by
// end to end), an action made elsewhere (the CLI) without a reload, at 1280 px without clipping, as cards at 390 px,
// and with no axe violations.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getApproval } from '../../src/approvals/store.js';
import { queryAudit } from '../../src/audit/query.js';
import { runTool } from '../../src/pipeline/run-tool.js';
import { keyFor } from '../support/governance.js';
import { cli } from '../support/run-cli.js';
import { ARTIFACTS, screenshot } from './browser.js';
import { useConsoleServer } from './fixture.js';

/** How long the page may take to show what a test waits for: generous, for a busy machine. */
const WAIT_MS = 15_000;

let home: string;
let env: Record<string, string>;
/** The operator `rosa`'s token, as `leash operators add` printed it. */
let rosa = '';

const leash = useConsoleServer({
  adminToken: 'operator-actions-admin-token-0123456789',
  poolMax: 8,
  policies: [
    { name: 'mail', tools: { send_email: { from: 'Support <support@acme.com>', to_domains: ['acme.com'] } } },
    {
      name: 'gated-mail',
      tools: {
        send_email: {
          from: 'Support <support@acme.com>',
          to_domains: ['acme.com'],
          approval: { always: true, expires: '30m' },
        },
      },
    },
  ],
  prepare: async ({ tdb }) => {
    home = await mkdtemp(join(tmpdir(), 'leash-console-actions-'));
    env = { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' };
    const added = await cli(['operators', 'add', 'rosa'], env);
    expect(added.code, added.stderr).toBe(0);
    rosa = added.stdout.trim();
  },
});

afterAll(async () => {
  if (home) await rm(home, { recursive: true, force: true });
});

/** A page signed in with `token`, with axe-core in it. */
const signedIn = (token: string, width = 1280) => leash.signedIn({ token, width, axe: true });

/** The newest row of the actions panel that holds `text`, its cells read as one line. */
const rowText = async (page: Page, text: string) =>
  (
    await page
      .locator('#actions-table tbody tr')
      .filter({ hasText: text })
      .first()
      .innerText({ timeout: WAIT_MS })
  )
    .replace(/\s+/g, ' ')
    .trim();

/** axe-core's violations under `selector` (every rule it runs by default, or only `rules`), as "rule: target". */
const violations = async (page: Page, selector: string, rules?: string[]): Promise<string[]> =>
  JSON.parse(
    String(
      await page.evaluate(`axe.run(${JSON.stringify(selector)}, ${JSON.stringify(rules ? { runOnly: rules } : {})})
        .then((r) => JSON.stringify(r.violations.flatMap((v) => v.nodes.map((n) => v.id + ': ' + n.target.join(' ')))))`),
    ),
  ) as string[];

/** The most any of these elements holds beyond its own width (0 or less: nothing cut off or scrolled out). */
const hiddenBeyond = (page: Page, selector: string) =>
  page.evaluate(
    `Math.max(...[...document.querySelectorAll(${JSON.stringify(selector)})].map((el) => el.scrollWidth - el.clientWidth))`,
  );
const overflow = (page: Page) => page.evaluate('document.documentElement.scrollWidth - window.innerWidth');

describe('signing in', () => {
  it('asks for an operator token or the admin token', async () => {
    const context = await leash.newContext();
    try {
      const page = await context.newPage();
      await page.goto(`${leash.origin}/console`);
      await expect(page.locator('label[for="token"]').textContent()).resolves.toBe(
        'Operator token or admin token',
      );
      await expect(page.locator('#token-hint').textContent()).resolves.toContain('leash operators add NAME');
    } finally {
      await context.close();
    }
  });

  it('names the break-glass admin token in the header', async () => {
    const { context, page } = await signedIn(leash.setup.adminToken);
    try {
      await expect(page.locator('#who').textContent()).resolves.toBe(
        'Signed in as admin (break-glass token)',
      );
    } finally {
      await context.close();
    }
  });
});

describe('an operator signed in', () => {
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    ({ context, page } = await signedIn(rosa));
  });
  afterAll(async () => {
    await context?.close();
  });

  it('shows the operator’s name in the header', async () => {
    await expect(page.locator('#who').textContent()).resolves.toBe('Signed in as rosa');
    await expect(page.locator('#who').getAttribute('data-admin-token')).resolves.toBe('no');
  });

  it('revokes a key and the panel says rosa revoked it, through the console', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'mail', agent: 'mailer', runId: 'night-1' });
    const row = page.locator(`#agents-table tr[data-key-id="${key.id}"]`);
    await row.waitFor({ timeout: WAIT_MS });
    await row.locator('button[data-revoke="key"]').click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.fill('#confirm-reason', 'mail loop');
    await page.click('#confirm-revoke');

    await expect
      .poll(() => rowText(page, key.id), { timeout: WAIT_MS })
      .toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d rosa revoked key ${key.id} mail loop console$`));
    const { rows } = await leash.tdb.pool.query<{ revoked_by: string }>(
      'select revoked_by from vault_keys where id = $1',
      [key.id],
    );
    expect(rows[0]?.revoked_by).toBe('rosa');
  });

  it('approves a held call: decided_by is rosa in the approval, the audit row and the panel', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'gated-mail', agent: 'gated-mailer', runId: 'night-2' });
    const held = await runTool(leash.deps, key.key, 'send_email', {
      to: ['pat@acme.com'],
      subject: 'Refund 77',
      text: 'on its way',
    });
    expect(held).toMatchObject({ ok: false, failure: { code: 'approval_required' } });
    const id = held.ok ? '' : String(held.failure.details?.approval_id);
    const card = page.locator(`article[data-approval-id="${id}"]`);
    await card.waitFor({ timeout: WAIT_MS });
    await card.locator('input').fill('customer called');
    await card.locator('button[data-decide="approve"]').click();
    await card.waitFor({ state: 'detached' });

    await expect
      .poll(() => rowText(page, id), { timeout: WAIT_MS })
      .toMatch(new RegExp(`rosa approved approval ${id} customer called console$`));
    expect(await getApproval(leash.tdb.db, id)).toMatchObject({ status: 'approved', decided_by: 'rosa' });
    const audit = await queryAudit(leash.tdb.db, { keyId: key.id });
    expect(audit.find((r) => r.decision === 'held')?.approval).toMatchObject({
      id,
      status: 'approved',
      decided_by: 'rosa',
      note: 'customer called',
    });
  });

  it('shows an action made elsewhere (the CLI) without a reload', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'mail', agent: 'cli-target', runId: 'night-3' });
    const r = await cli(['keys', 'revoke', key.id, '--by', 'sam-on-call'], env);
    expect(r.code, r.stderr).toBe(0);
    await expect
      .poll(() => rowText(page, key.id), { timeout: WAIT_MS })
      .toMatch(new RegExp(`sam-on-call revoked key ${key.id} .*CLI$`));
  });

  it('fits 1280 px with nothing in the panel or header cut, and passes axe', async () => {
    await page.locator('#actions-table tbody tr').nth(2).waitFor({ timeout: WAIT_MS });
    await screenshot(page, 'operator-actions-1280');
    await page.locator('#actions').screenshot({ path: join(ARTIFACTS, 'operator-actions-panel.png') });
    expect(await overflow(page)).toBeLessThanOrEqual(0);
    expect(await hiddenBeyond(page, '#actions-table td, #actions-table th, #who')).toBeLessThanOrEqual(0);
    expect(await page.locator('#actions-empty').isHidden()).toBe(true);
    // A column per header: when, who, what, on what, through which door.
    expect(await page.locator('#actions-table thead th').allTextContents()).toEqual([
      'Time',
      'Who',
      'Action',
      'Target',
      'Via',
    ]);
    expect(await page.locator('#actions-table tbody tr:first-child td').count()).toBe(5);
    expect(await violations(page, '#actions')).toEqual([]);
    expect(await violations(page, '.topbar')).toEqual([]);
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      expect(await violations(page, '#actions', ['color-contrast']), scheme).toEqual([]);
      expect(await violations(page, '.topbar', ['color-contrast']), scheme).toEqual([]);
    }
    await page.emulateMedia({ colorScheme: null });
  });
});

describe('at phone width', () => {
  it('lays each action out as a card, and nothing scrolls sideways', async () => {
    const { context, page } = await signedIn(rosa, 390);
    try {
      await page.locator('#actions-table tbody tr').first().waitFor({ timeout: WAIT_MS });
      await page.locator('#actions').scrollIntoViewIfNeeded();
      await screenshot(page, 'operator-actions-phone');
      expect(await overflow(page)).toBeLessThanOrEqual(0);
      const display = String(
        await page.evaluate(`getComputedStyle(document.querySelector('#actions-table tbody tr')).display`),
      );
      expect(display).toBe('flex');
      const right = Number(
        await page.evaluate(
          `Math.max(...[...document.querySelectorAll('#actions-table td, #who')].map((el) => el.getBoundingClientRect().right))`,
        ),
      );
      expect(right).toBeLessThanOrEqual(390);
      expect(await violations(page, '#actions', ['color-contrast'])).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
