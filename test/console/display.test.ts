// Covers what operators read of agent-supplied text, in a real browser and in the CLI: bidi overrides and other
// hidden characters shown as ⟨U+…⟩ markers on the console and the approval link page, and a 3,000-character
// unbroken value neither widening the page (at 1280 px and 390 px) nor being lost (the detail view shows it all).
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { linkKey, linkUrl, mintLinkToken } from '../../src/approvals/link.js';
import { approvalLinkRoutes } from '../../src/approvals/link-routes.js';
import { claimUnannounced, decideApproval } from '../../src/approvals/store.js';
import { visibleMarker } from '../../src/audit/display-text.js';
import { uuidv7 } from '../../src/audit/uuid.js';
import { runTool } from '../../src/pipeline/run-tool.js';
import { keyFor } from '../support/governance.js';
import { cli } from '../support/run-cli.js';
import { screenshot } from './browser.js';
import { useConsoleServer } from './fixture.js';

const TOKEN = 'display-admin-token-0123456789abcdef';
/**
 * Any character that would reorder or hide text if it reached the screen raw (line feeds aside: the pages' own
 * markup and the terminal's line ends have them, and they reorder nothing).
 */
const RAW_HIDDEN =
  // eslint-disable-next-line no-control-regex -- finding control characters is the point
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;
const rawIn = (text: string) => [...text.matchAll(RAW_HIDDEN)].map((m) => visibleMarker(m[0]));

// Reads "Refund for exe.pdf" with the override; the isolate hides "hidden" from a quick read.
const SUBJECT = `Refund for \u202Efdp.exe\u202C and \u2066hidden\u2069 ` + 'S'.repeat(900);
const SUBJECT_SHOWN = `Refund for ⟨U+202E⟩fdp.exe⟨U+202C⟩ and ⟨U+2066⟩hidden⟨U+2069⟩ ` + 'S'.repeat(900);
const LABEL = 'W'.repeat(3000);
const LONG_RUN = '\u2066' + 'R'.repeat(3000);
const LONG_RUN_SHOWN = '⟨U+2066⟩' + 'R'.repeat(3000);

const signing = linkKey({ adminToken: TOKEN });
const leash = useConsoleServer({
  adminToken: TOKEN,
  poolMax: 8,
  policies: [
    {
      name: 'gated',
      tools: {
        send_email: {
          from: 'Support <support@acme.com>',
          to_domains: ['acme.com'],
          approval: { always: true, expires: '30m' },
        },
      },
    },
  ],
  routes: (web, { db }) => [web, approvalLinkRoutes(db, signing)],
});
let env: Record<string, string>;
let keyId = '';
let approvalId = '';
let heldAuditId = '';
let rawAuditId = '';
let approvalLink = '';

beforeAll(async () => {
  const { tdb, deps } = leash;
  env = { DATABASE_URL: tdb.url, LEASH_HOME: '/nonexistent/leash-display', LEASH_LOG: 'silent' };
  // A key whose label is 3,000 characters with no break, and a call of it whose subject carries bidi controls.
  const key = await keyFor(tdb.db, {
    policy: 'gated',
    agent: 'spoof-bot',
    runId: 'ticket-9',
    label: `\u202E${LABEL}`,
  });
  keyId = key.id;
  const held = await runTool(deps, key.key, 'send_email', {
    to: ['pat@acme.com'],
    subject: SUBJECT,
    text: 'Your refund is on its way.',
  });
  expect(held).toMatchObject({ ok: false, failure: { code: 'approval_required' } });
  approvalId = held.ok ? '' : String(held.failure.details?.approval_id);
  heldAuditId = held.ok ? '' : String(held.failure.audit_id);
  // A second request, denied by someone whose name and note carry bidi controls (the link page's "Your name").
  const other = await runTool(deps, key.key, 'send_email', {
    to: ['pat@acme.com'],
    subject: 'another',
    text: 'x',
  });
  const otherId = other.ok ? '' : String(other.failure.details?.approval_id);
  const denied = await decideApproval(tdb.db, otherId, 'denied', 'ops\u202Eeve', 'see \u2066note\u2069');
  expect(denied.ok).toBe(true);
  // Agent and run names are checked when a key is minted; the audit table may still hold anything (psql, an older
  // leash), and what operators read must hold whatever it holds.
  rawAuditId = uuidv7();
  await tdb.db
    .insertInto('audit_log')
    .values({
      id: rawAuditId,
      key_id: key.id,
      agent: 'bot\u202Etxt.exe',
      run_id: LONG_RUN,
      policy: 'gated',
      policy_version: 1,
      tool: 'send_email',
      vendor: 'resend',
      operation: 'POST /emails',
      account: null,
      decision: 'denied',
      reason: `recipient_not_allowed\u2066 ${'Q'.repeat(3000)}`,
      outcome: 'failed',
      reserved_micros: 0,
      cost_micros: 0,
      cost_status: 'none',
      amount: null,
      currency: null,
      vendor_request_id: null,
      vendor_object_id: `em_\u202E${'V'.repeat(200)}`,
      http_status: null,
      error: null,
      request: null,
      args_hash: null,
      budget: '[]',
      sandbox: false,
      latency_ms: 3,
      settled_at: null,
      metadata: '{}',
    })
    .execute();
  // Arm the request's signed link as the approval loop would.
  const tokens = new Map<string, string>();
  await claimUnannounced(tdb.db, (row) => {
    if (!signing) return undefined;
    const t = mintLinkToken(signing, row.id, row.expires_at);
    tokens.set(row.id, t.token);
    return t.hash;
  });
  approvalLink = linkUrl(leash.origin, approvalId, tokens.get(approvalId) ?? '');
});

// Page expressions are strings (this project's types have no DOM), as in console.test.ts.
const READABLE = `JSON.stringify([document.body.textContent, ...[...document.querySelectorAll('*')].flatMap((el) =>
  [...el.attributes].filter((a) => !a.name.startsWith('data-')).map((a) => el.tagName + ' ' + a.name + ': ' + a.value))])`;

/** Raw hidden characters anywhere a person could read them: text, and attributes other than data-*. */
async function rawHiddenOnPage(page: Page): Promise<string[]> {
  const texts = z.array(z.string()).parse(JSON.parse(String(await page.evaluate(READABLE))));
  return texts.filter((t) => rawIn(t).length).map((t) => `${t.slice(0, 40)}…: ${rawIn(t).join('')}`);
}

/** How far the page reaches past the window's right edge (0 or less: no sideways scrolling). */
const overflow = async (page: Page) =>
  Number(await page.evaluate('document.documentElement.scrollWidth - window.innerWidth'));

/** The most any of these elements holds beyond its own width (0 or less: nothing cut off or scrolled out). */
const hiddenBeyond = async (page: Page, selector: string) =>
  Number(
    await page.evaluate(
      `Math.max(...[...document.querySelectorAll(${JSON.stringify(selector)})].map((el) => el.scrollWidth - el.clientWidth))`,
    ),
  );

const signedIn = (width: number) => leash.signedIn({ width });

describe.each([1280, 390])('the console at %i px', (width) => {
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    ({ context, page } = await signedIn(width));
    await page.locator(`tr[data-audit-id="${rawAuditId}"]`).waitFor();
    await page.locator(`tr[data-audit-id="${heldAuditId}"]`).waitFor();
    await page.locator(`article[data-approval-id="${approvalId}"]`).waitFor();
    await page.locator(`#agents-table tr[data-key-id="${keyId}"]`).waitFor();
  });
  afterAll(async () => {
    await context?.close();
  });

  it('shows bidi controls as visible markers, never raw', async () => {
    expect(await rawHiddenOnPage(page)).toEqual([]);
    const row = page.locator(`tr[data-audit-id="${rawAuditId}"]`);
    await expect(row.textContent()).resolves.toContain('bot⟨U+202E⟩txt.exe');
    const card = page.locator(`article[data-approval-id="${approvalId}"]`);
    await expect(card.textContent()).resolves.toContain(SUBJECT_SHOWN);
    await expect(page.locator(`#agents-table tr[data-key-id="${keyId}"]`).textContent()).resolves.toContain(
      `⟨U+202E⟩${LABEL}`,
    );
  });

  it('is never wider than the window, whatever the length of a value', async () => {
    await screenshot(page, `display-console-${width}`);
    expect(await overflow(page)).toBeLessThanOrEqual(0);
    for (const sel of [
      `#agents-table tr[data-key-id="${keyId}"]`,
      `article[data-approval-id="${approvalId}"]`,
    ]) {
      const box = await page.locator(sel).boundingBox();
      expect(box && box.x + box.width, sel).toBeLessThanOrEqual(width);
    }
    // The label wraps in its own box (scrolling down past a few lines), never sideways.
    expect(
      await hiddenBeyond(page, `#agents-table tr[data-key-id="${keyId}"] .key-label`),
    ).toBeLessThanOrEqual(0);
    if (width >= 1280) {
      // At desktop width the live table fits its panel: long values are cut there, not scrolled to.
      expect(await hiddenBeyond(page, '.table-wrap')).toBeLessThanOrEqual(0);
    }
  });

  it('shows the whole value, markers included, in the row’s detail view', async () => {
    await page.locator(`tr[data-audit-id="${rawAuditId}"] button.link`).click();
    const details = page.locator('#details');
    await details.waitFor({ state: 'visible' });
    try {
      const text = (await details.textContent()) ?? '';
      expect(text).toContain(LONG_RUN_SHOWN);
      expect(text).toContain(`recipient_not_allowed⟨U+2066⟩ ${'Q'.repeat(3000)}`);
      expect(text).toContain(`em_⟨U+202E⟩${'V'.repeat(200)}`);
      expect(await rawHiddenOnPage(page)).toEqual([]);
      // Wrapped inside the dialog, not cut off or scrolled sideways.
      expect(await hiddenBeyond(page, '#details dd')).toBeLessThanOrEqual(0);
      const box = await details.boundingBox();
      expect(box && box.x + box.width).toBeLessThanOrEqual(width);
      expect(await overflow(page)).toBeLessThanOrEqual(0);
      await screenshot(page, `display-details-${width}`);
    } finally {
      await page.keyboard.press('Escape');
      await details.waitFor({ state: 'hidden' });
    }
  });
});

describe.each([1280, 390])('the approval link page at %i px', (width) => {
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    context = await leash.newContext({ viewport: { width, height: 800 } });
    page = await context.newPage();
    const response = await page.goto(approvalLink);
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-security-policy']).toContain("default-src 'none'");
    await page.locator('form button[value="approve"]').waitFor();
  });
  afterAll(async () => {
    await context?.close();
  });

  it('shows the subject’s bidi controls as markers, never raw', async () => {
    expect(await rawHiddenOnPage(page)).toEqual([]);
    // The exact arguments, as JSON: the subject in full, markers and all.
    await expect(page.locator('pre').textContent()).resolves.toContain(JSON.stringify(SUBJECT_SHOWN));
  });

  it('wraps the long subject inside the page: nothing wider than the window, nothing scrolled out of view', async () => {
    await screenshot(page, `display-approval-link-${width}`);
    expect(await overflow(page)).toBeLessThanOrEqual(0);
    expect(await hiddenBeyond(page, 'pre, dd')).toBeLessThanOrEqual(0);
  });
});

describe('the CLI', () => {
  // Nothing hidden may reach the terminal either: an ESC could restyle or rewrite what it shows.
  it('prints audit tail and audit query lines with markers, never raw controls', async () => {
    const tail = await cli(['audit', 'tail', '-n', '5', '--agent', 'bot\u202Etxt.exe'], env);
    expect(tail.code, tail.stderr).toBe(0);
    expect(rawIn(tail.stdout)).toEqual([]);
    expect(tail.stdout).toContain('bot⟨U+202E⟩txt.exe');
    expect(tail.stdout).toContain('⟨U+2066⟩RRR');
    const decided = await cli(['audit', 'tail', '-n', '5', '--run', 'ticket-9'], env);
    expect(rawIn(decided.stdout)).toEqual([]);
    expect(decided.stdout).toContain('denied by ops⟨U+202E⟩eve');
    const query = await cli(['audit', 'query', '--key', keyId, '--wide'], env);
    expect(query.code, query.stderr).toBe(0);
    expect(rawIn(query.stdout)).toEqual([]);
    expect(query.stdout).toContain('bot⟨U+202E⟩txt.exe');
    expect(query.stdout).toContain(`em_⟨U+202E⟩V`);
  });

  it('prints approvals list and show with markers, never raw controls, and keeps --json raw for scripts', async () => {
    const list = await cli(['approvals', 'list', '--wide'], env);
    expect(list.code, list.stderr).toBe(0);
    expect(rawIn(list.stdout)).toEqual([]);
    expect(list.stdout).toContain(approvalId);
    expect(list.stdout).toContain('ops⟨U+202E⟩eve');
    expect(list.stdout).toContain('see ⟨U+2066⟩note⟨U+2069⟩');
    const show = await cli(['approvals', 'show', approvalId], env);
    expect(show.code, show.stderr).toBe(0);
    expect(rawIn(show.stdout)).toEqual([]);
    expect(show.stdout).toContain('Refund for ⟨U+202E⟩fdp.exe⟨U+202C⟩ and ⟨U+2066⟩hidden⟨U+2069⟩');
    const json = await cli(['approvals', 'show', approvalId, '--json'], env);
    expect((JSON.parse(json.stdout) as { request: { subject: string } }).request.subject).toBe(SUBJECT);
  });
});
