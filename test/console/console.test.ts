// Covers the operator console in a real browser (system Chromium via playwright-core): sign-in, live audit rows
// from a real MCP client, revoke and approvals from the console, cross-site refusals, and no request leaving
// leash's origin.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRoutes } from '../../src/admin/routes.js';
import { getApproval } from '../../src/approvals/store.js';
import { createAuthThrottle } from '../../src/server/auth-throttle.js';
import { keyFor } from '../support/governance.js';
import { holdAnswers } from '../support/vendors.js';
import { screenshot } from './browser.js';
import { useConsoleServer } from './fixture.js';

const TOKEN = 'console-admin-token-0123456789abcdef';
/** How long the page may take to show what a test waits for: generous, for a busy machine. */
const WAIT_MS = 15_000;
const throttle = createAuthThrottle({ maxFailures: 50, windowMs: 60_000 });
const leash = useConsoleServer({
  adminToken: TOKEN,
  poolMax: 12,
  policies: [
    {
      name: 'support',
      limits: { daily_usd: 5, per_key_daily_usd: 1 },
      tools: {
        send_email: { from: 'Support <support@acme.com>', to_domains: ['acme.com'], max_recipients: 2 },
        get_budget: {},
      },
    },
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
  throttle,
  routes: (web, { deps, config }) => [adminRoutes(deps, config, undefined, throttle), web],
});
/** Every URL any console page asked for, across all tests. */
const requested: string[] = [];

/** A page (1280 px unless given) whose every request is recorded in `requested`. */
const newPage = (width?: number) =>
  leash.newPage({ ...(width ? { width } : {}), onRequest: (r) => requested.push(r.url()) });
const signIn = (page: Page, token = TOKEN) => leash.signIn(page, token);

async function mcpClient(key: string) {
  const client = new Client({ name: 'console-test-agent', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${leash.origin}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

const email = (client: Client, subject: string) =>
  client.callTool({
    name: 'send_email',
    arguments: { to: ['pat@acme.com'], subject, text: 'Your refund is on its way.' },
  }) as Promise<CallToolResult>;
const structured = (r: CallToolResult) => r.structuredContent as Record<string, unknown>;

/**
 * One email sent as `agent` (a key of its own) through a real MCP client, so a test has the rows it looks at
 * whatever ran before it (the suite passes in any order).
 */
async function emailAs(agent: string, policy = 'support'): Promise<CallToolResult> {
  const key = await keyFor(leash.tdb.db, { policy, agent, runId: `run-${agent}` });
  const client = await mcpClient(key.key);
  try {
    return await email(client, `From ${agent}`);
  } finally {
    await client.close();
  }
}
function approvalId(r: CallToolResult): string {
  const s = structured(r) as { details?: { approval_id?: unknown }; approval_id?: unknown };
  const id = s.details?.approval_id ?? s.approval_id;
  expect(typeof id, JSON.stringify(r)).toBe('string');
  return String(id);
}

describe('signing in', () => {
  it('refuses a wrong admin token and sets no session', async () => {
    const { context, page } = await newPage();
    await signIn(page, 'not-the-admin-token-but-long-enough');
    await expect(page.locator('#signin-error').textContent()).resolves.toContain('not the admin token');
    expect((await context.cookies()).filter((c) => c.name === 'leash_console')).toEqual([]);
    expect((await page.request.get(`${leash.origin}/console/api/overview`)).status()).toBe(401);
    await screenshot(page, 'signin-refused');
    await context.close();
  });

  it('signs in with the admin token into an HttpOnly, SameSite=Strict session, never putting the token in a URL', async () => {
    const { context, page } = await newPage();
    const response = await page.goto(`${leash.origin}/console`);
    expect(response?.headers()['content-security-policy']).toContain("default-src 'none'");
    expect(response?.headers()['content-security-policy']).toContain("script-src 'self'");
    await page.fill('#token', TOKEN);
    await page.click('#signin button[type=submit]');
    await page.locator('#status[data-state="live"]').waitFor();
    const [cookie] = (await context.cookies()).filter((c) => c.name === 'leash_console');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/console' });
    expect(await page.evaluate('document.cookie')).toBe('');
    expect(requested.some((u) => u.includes(TOKEN))).toBe(false);
    expect(page.url()).toBe(`${leash.origin}/console`);

    await page.click('.signout button');
    await page.locator('#token').waitFor();
    expect((await page.request.get(`${leash.origin}/console/api/overview`)).status()).toBe(401);
    await context.close();
  });
});

describe('the signed-in console', () => {
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    ({ context, page } = await newPage());
    await signIn(page);
    await page.locator('#status[data-state="live"]').waitFor();
  });
  afterAll(async () => {
    await context.close();
  });

  it('shows a call made by an MCP client as it happens, settled, without a reload', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'support', agent: 'mailer', runId: 'ticket-1' });
    const client = await mcpClient(key.key);
    const result = await email(client, 'Refund 1');
    expect(result.isError, JSON.stringify(result)).toBeFalsy();
    const id = String(structured(result).audit_id);
    // How soon is for bench/; here, that the open page shows it.
    await page
      .locator(`tr[data-audit-id="${id}"][data-outcome="succeeded"][data-cost-status="settled"]`)
      .waitFor({ timeout: WAIT_MS });
    const row = page.locator(`tr[data-audit-id="${id}"]`);
    await expect(row.textContent()).resolves.toMatch(
      /mailer.*ticket-1.*send_email.*allowed.*succeeded.*\$0\.0004/,
    );
    await client.close();
  });

  it('shows a call as pending while the vendor works, then updates the same row when it settles', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'support', agent: 'slow-mailer', runId: 'ticket-2' });
    const client = await mcpClient(key.key);
    // Resend sends the email and holds its answer until released: the row is seen while the vendor works.
    const release = holdAnswers(leash.vendors.resend);
    const call = email(client, 'Refund 2');
    try {
      const pending = page.locator('tr[data-outcome="pending"]', { hasText: 'slow-mailer' });
      await pending.waitFor({ timeout: WAIT_MS });
      await screenshot(page, 'live-pending');
      // Read while it is pending: once released, the row may settle (and no longer match) before the call returns.
      const pendingId = await pending.getAttribute('data-audit-id');
      release();
      const result = await call;
      const id = String(structured(result).audit_id);
      expect(pendingId).toBe(id);
      await page.locator(`tr[data-audit-id="${id}"][data-outcome="succeeded"]`).waitFor({ timeout: WAIT_MS });
      expect(await page.locator(`tr[data-audit-id="${id}"]`).count()).toBe(1);
    } finally {
      release();
      await call.catch(() => undefined);
      await client.close();
    }
  });

  it('opens a row’s details from the keyboard, with no secret in them', async () => {
    expect((await emailAs('details-reader')).isError).toBeFalsy();
    const button = page.locator('tr', { hasText: 'details-reader' }).locator('button.link');
    await button.waitFor({ timeout: WAIT_MS });
    await button.focus();
    await page.keyboard.press('Enter');
    const details = page.locator('#details');
    await details.waitFor({ state: 'visible' });
    const text = (await details.textContent()) ?? '';
    expect(text).toContain('details-reader');
    expect(text).toContain('send_email');
    expect(text).not.toMatch(/lsk_|re_canary|sk_test|canary/i);
    await screenshot(page, 'details');
    await page.keyboard.press('Escape');
    await details.waitFor({ state: 'hidden' });
  });

  it('filters the live view by agent', async () => {
    // Two agents, one's name inside the other's: the filter is the agent, not a substring of it.
    for (const agent of ['mailer', 'slow-mailer']) {
      expect((await emailAs(agent)).isError).toBeFalsy();
      await page.locator('#audit tbody tr', { hasText: agent }).first().waitFor({ timeout: WAIT_MS });
    }
    await page.fill('#filters input[name=agent]', 'mailer');
    await page.locator('#status[data-state="live"]').waitFor();
    await expect
      .poll(() => page.locator('#audit tbody tr', { hasText: 'slow-mailer' }).count(), { timeout: WAIT_MS })
      .toBe(0);
    await expect
      .poll(() => page.locator('#audit tbody tr', { hasText: 'mailer' }).count(), { timeout: WAIT_MS })
      .toBeGreaterThan(0);
    await page.click('#filters button[type=reset]');
    await expect
      .poll(() => page.locator('#audit tbody tr', { hasText: 'slow-mailer' }).count(), { timeout: WAIT_MS })
      .toBeGreaterThan(0);
  });

  it('shows today’s spend per policy against its cap and the last 7 days', async () => {
    expect((await emailAs('mailer')).isError).toBeFalsy();
    const policy = page.locator('#spend-policies .bar[data-name="support"]');
    await expect.poll(() => policy.textContent(), { timeout: WAIT_MS }).toContain('of $5.00');
    await expect
      .poll(() => page.locator('#spend-agents .bar[data-name="mailer"]').textContent(), { timeout: WAIT_MS })
      .toContain('support');
    expect(await page.locator('#spend-days .day').count()).toBe(7);
    await screenshot(page, 'console-1280');
  });

  it('revokes a key from its agents view row with one confirmation, and the agent’s next call is refused key_revoked', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'support', agent: 'refund-bot', runId: 'ticket-3' });
    const client = await mcpClient(key.key);
    expect((await email(client, 'before')).isError).toBeFalsy();
    const item = page.locator(`#agents-table tr[data-key-id="${key.id}"]`);
    await item.waitFor({ timeout: WAIT_MS });
    await item.locator('button[data-revoke="key"]').click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await expect(page.locator('#confirm-text').textContent()).resolves.toContain(key.id);
    await page.fill('#confirm-reason', 'looping on refunds');
    await screenshot(page, 'revoke-confirm');
    await page.click('#confirm-revoke');
    await expect
      .poll(() => page.locator('#toast').textContent(), { timeout: WAIT_MS })
      .toMatch(/Revoked 1 key/);
    await item.waitFor({ state: 'detached' });

    leash.vendors.reset();
    const after = await email(client, 'after');
    expect(after.isError).toBe(true);
    expect(structured(after).code).toBe('key_revoked');
    expect(leash.vendors.requests()).toBe(0);
    await page.locator('tr', { hasText: 'key_revoked' }).first().waitFor({ timeout: WAIT_MS });
    await client.close();
  });

  it('cancelling the confirmation revokes nothing', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'support', agent: 'careful-bot', runId: 'ticket-4' });
    await page.evaluate("document.dispatchEvent(new Event('visibilitychange'))");
    const row = page.locator('#agents-table tr[data-agent="careful-bot"]');
    await row.waitFor({ timeout: WAIT_MS });
    await row.locator('button[data-revoke="agent"]').click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.keyboard.press('Escape');
    await page.locator('#confirm').waitFor({ state: 'hidden' });
    const client = await mcpClient(key.key);
    expect((await email(client, 'still allowed')).isError).toBeFalsy();
    await client.close();
  });

  it('approves a held call with a note, and the agent’s identical call then goes through', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'gated', agent: 'gated-bot', runId: 'ticket-6' });
    const client = await mcpClient(key.key);
    leash.vendors.reset();
    const held = await email(client, 'Big refund');
    expect(structured(held)).toMatchObject({ code: 'approval_required' });
    const id = approvalId(held);
    const card = page.locator(`article[data-approval-id="${id}"]`);
    await card.waitFor({ timeout: WAIT_MS });
    await expect(card.textContent()).resolves.toMatch(/send_email.*gated-bot.*Big refund/s);
    await card.locator('input').fill('customer called');
    await screenshot(page, 'approval');
    await card.locator('button[data-decide="approve"]').click();
    await card.waitFor({ state: 'detached' });
    await expect.poll(() => page.locator('#toast').textContent(), { timeout: WAIT_MS }).toMatch(/Approved/);
    expect(await getApproval(leash.tdb.db, id)).toMatchObject({
      status: 'approved',
      // Signed in with the admin token: recorded as `admin` (an operator's token records their name).
      decided_by: 'admin',
      note: 'customer called',
    });
    expect(leash.vendors.requests()).toBe(0);
    const again = await email(client, 'Big refund');
    expect(again.isError, JSON.stringify(again)).toBeFalsy();
    expect(leash.vendors.resend.received.length).toBe(1);
    await client.close();
  });

  it('denies a held call from the console, and nothing reaches the vendor', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'gated', agent: 'gated-bot', runId: 'ticket-7' });
    const client = await mcpClient(key.key);
    leash.vendors.reset();
    const id = approvalId(await email(client, 'Suspicious refund'));
    const card = page.locator(`article[data-approval-id="${id}"]`);
    await card.waitFor({ timeout: WAIT_MS });
    await card.locator('button[data-decide="deny"]').click();
    await card.waitFor({ state: 'detached' });
    expect(await getApproval(leash.tdb.db, id)).toMatchObject({ status: 'denied', decided_by: 'admin' });
    expect((await email(client, 'Suspicious refund')).isError).toBe(true);
    expect(leash.vendors.requests()).toBe(0);
    await client.close();
  });

  it('keeps the focus and the typing in a note while the approvals panel re-renders for a new held call', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'gated', agent: 'note-typist', runId: 'ticket-8' });
    const client = await mcpClient(key.key);
    const firstId = approvalId(await email(client, 'First refund'));
    const first = page.locator(`article[data-approval-id="${firstId}"]`);
    let second = page.locator('article[data-approval-id="none"]');
    try {
      await first.waitFor({ timeout: WAIT_MS });
      const note = first.locator('input');
      await note.focus();
      await page.keyboard.type('customer ');
      // Another held call: the panel re-renders to show its card, and must leave the one being typed in alone.
      second = page.locator(
        `article[data-approval-id="${approvalId(await email(client, 'Second refund'))}"]`,
      );
      await second.waitFor({ timeout: WAIT_MS });
      await page.keyboard.type('called twice');
      const focused = `document.activeElement === document.querySelector('[data-approval-id="${firstId}"] input')`;
      expect(await page.evaluate(focused)).toBe(true);
      expect(await note.inputValue()).toBe('customer called twice');
    } finally {
      for (const card of [first, second])
        if (await card.count()) {
          await card.locator('button[data-decide="deny"]').click();
          await card.waitFor({ state: 'detached', timeout: WAIT_MS });
        }
      await client.close();
    }
  });

  it('filters the live view to held calls', async () => {
    expect(structured(await emailAs('gated-bot', 'gated'))).toMatchObject({ code: 'approval_required' });
    expect((await emailAs('mailer')).isError).toBeFalsy();
    await page.selectOption('#filters select[name="decision"]', 'held');
    try {
      const rows = page.locator('#audit tbody tr');
      await rows.filter({ hasText: 'gated-bot' }).first().waitFor({ timeout: WAIT_MS });
      // The view reconnects after a filter change and may be briefly empty: wait for it to settle on held rows only.
      const badges = () => page.locator('#audit tbody tr .badge').allTextContents();
      await expect.poll(async () => [...new Set(await badges())], { timeout: WAIT_MS }).toEqual(['held']);
      expect(await rows.filter({ hasText: 'mailer' }).count()).toBe(0);
    } finally {
      await page.selectOption('#filters select[name="decision"]', '');
    }
  });

  it('is readable at phone width without sideways scrolling', async () => {
    const phone = await context.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    expect((await emailAs('phone-reader')).isError).toBeFalsy();
    await phone.goto(`${leash.origin}/console`);
    await phone.locator('#status[data-state="live"]').waitFor();
    await phone.locator('#audit tbody tr').first().waitFor();
    const overflow = await phone.evaluate('document.documentElement.scrollWidth - window.innerWidth');
    expect(overflow).toBeLessThanOrEqual(0);
    await screenshot(phone, 'console-phone');
    await phone.close();
  });

  it('made no request outside the leash origin', async () => {
    // Its own pages, whatever ran before it: signed in, streaming, a call's row and details, the agents view moving
    // with it, a held call denied, a filter change, a reload and a phone-width page. Every request is recorded here
    // and, like every other page's, in `requested`.
    const own: string[] = [];
    const { context: ctx, page: mine } = await leash.newPage({
      onRequest: (r) => {
        own.push(r.url());
        requested.push(r.url());
      },
    });
    try {
      await signIn(mine);
      await mine.locator('#status[data-state="live"]').waitFor();
      expect((await emailAs('origin-checker')).isError).toBeFalsy();
      const row = mine.locator('#audit tbody tr', { hasText: 'origin-checker' });
      await row.first().waitFor({ timeout: WAIT_MS });
      await mine.locator('#agents-table tr[data-agent="origin-checker"]').waitFor({ timeout: WAIT_MS });
      await row.first().locator('button.link').click();
      await mine.locator('#details').waitFor({ state: 'visible' });
      await mine.keyboard.press('Escape');
      await mine.locator('#details').waitFor({ state: 'hidden' });

      const held = await emailAs('origin-gated', 'gated');
      expect(structured(held)).toMatchObject({ code: 'approval_required' });
      const card = mine.locator(`article[data-approval-id="${approvalId(held)}"]`);
      await card.waitFor({ timeout: WAIT_MS });
      await card.locator('button[data-decide="deny"]').click();
      await card.waitFor({ state: 'detached' });

      await mine.fill('#filters input[name=agent]', 'origin-checker');
      await expect
        .poll(() => own.filter((u) => u.includes('agent=origin-checker')).length, { timeout: WAIT_MS })
        .toBeGreaterThan(0);
      await row.first().waitFor({ timeout: WAIT_MS });

      await mine.reload();
      await mine.locator('#status[data-state="live"]').waitFor();
      await mine.locator('#agents-table tr[data-agent="origin-checker"]').waitFor({ timeout: WAIT_MS });

      const phone = await ctx.newPage();
      await phone.setViewportSize({ width: 390, height: 844 });
      await phone.goto(`${leash.origin}/console`);
      await phone.locator('#status[data-state="live"]').waitFor();
      await phone.locator('#agents-table tr[data-agent="origin-checker"]').waitFor({ timeout: WAIT_MS });
    } finally {
      await ctx.close();
    }
    expect(own.length).toBeGreaterThan(10);
    expect(own.filter((u) => !u.startsWith(`${leash.origin}/`))).toEqual([]);
    // And every page of the file, whichever of the other tests ran before this one.
    expect(requested.filter((u) => !u.startsWith(`${leash.origin}/`))).toEqual([]);
  });
});

describe('cross-site protection', () => {
  const post = (path: string, headers: Record<string, string>, body: string) =>
    fetch(`${leash.origin}${path}`, { method: 'POST', headers, body, redirect: 'manual' });

  it('refuses a sign-in posted from another origin, even with the right token', async () => {
    const r = await post(
      '/console/login',
      { origin: 'http://attacker.example', 'content-type': 'application/x-www-form-urlencoded' },
      `token=${TOKEN}`,
    );
    expect(r.status).toBe(403);
    expect(r.headers.get('set-cookie')).toBeNull();
  });

  it('refuses a revoke without the session’s CSRF token, and revokes nothing', async () => {
    const login = await post(
      '/console/login',
      { origin: leash.origin, 'content-type': 'application/x-www-form-urlencoded' },
      `token=${TOKEN}`,
    );
    expect(login.status).toBe(303);
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    const key = await keyFor(leash.tdb.db, { policy: 'support', agent: 'csrf-target', runId: 'ticket-5' });
    const body = JSON.stringify({ key_id: key.id });
    const json = { cookie, 'content-type': 'application/json' };
    expect((await post('/console/api/revoke', { ...json, origin: leash.origin }, body)).status).toBe(403);
    expect(
      (
        await post(
          '/console/api/revoke',
          { ...json, origin: 'http://attacker.example', 'x-leash-csrf': 'x' },
          body,
        )
      ).status,
    ).toBe(403);
    const client = await mcpClient(key.key);
    expect((await email(client, 'not revoked')).isError).toBeFalsy();
    await client.close();
  });
});
