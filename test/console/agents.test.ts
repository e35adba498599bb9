// Covers the console pointing at the culprit, in a real browser: the 2 a.m. story (a key starts looping, the operator
// signs in, the looping agent is the agents view's top row, revoked from that row, its next call refused
// key_revoked), revoking a run from a call's details, money read as money, live activity without clipped columns at
// 1280 px and as cards at 390 px, and axe's colour-contrast rule on hovered and flashed rows, light and dark.
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uuidv7 } from '../../src/audit/uuid.js';
import { databaseNow } from '../../src/db/clock.js';
import { dayStart } from '../../src/ledger/windows.js';
import type { Db } from '../../src/db/database.js';
import { runTool, type ToolCallResult } from '../../src/pipeline/run-tool.js';
import { keyFor } from '../support/governance.js';
import { ARTIFACTS, screenshot } from './browser.js';
import { useConsoleServer } from './fixture.js';

/** How long the page may take to show what a test waits for: generous, for a busy machine. */
const WAIT_MS = 15_000;
/** The looping agent's pace (its own, as a runaway loop's would be): four texts a second. */
const LOOP_GAP_MS = 250;
/** A loop that is never refused stops here, so a failing test ends. */
const MAX_LOOP_CALLS = 2_000;
const REST_TOOL = 'twilio:POST /2010-04-01/Accounts/{AccountSid}/Messages.json';

const leash = useConsoleServer({
  adminToken: 'agents-admin-token-0123456789abcdef',
  poolMax: 12,
  policies: [
    {
      name: 'texts',
      limits: { daily_usd: 300, per_key_daily_usd: 150 },
      tools: { send_sms: { from: '+15550001111', to_prefixes: ['+1'] } },
    },
    { name: 'refunds', tools: { issue_refund: { approval: { always: true, expires: '30m' } } } },
  ],
});

/** A page signed in with the admin token, with axe-core in it for the contrast checks. */
const signedIn = (width = 1280) => leash.signedIn({ width, axe: true });

const sms = (key: string, n: number, to = '+15551234567') =>
  runTool(leash.deps, key, 'send_sms', { to, body: `Your code is ${n}` });

/** A key's agent sending texts at its own pace until a call is refused: every answer, and the refusal. */
function loop(key: string) {
  const answers: ToolCallResult[] = [];
  let stopped = false;
  const refused = (async () => {
    for (let n = 0; n < MAX_LOOP_CALLS && !stopped; n++) {
      const r = await sms(key, n);
      answers.push(r);
      if (!r.ok) return r;
      await new Promise((resolve) => setTimeout(resolve, LOOP_GAP_MS));
    }
    throw new Error('the loop was never refused');
  })();
  return { answers, refused, stop: () => void (stopped = true) };
}

/** An audit row written as the pipeline would, at `ts` (history, or a REST call's row, without a vendor). */
async function auditRow(
  db: Db,
  o: {
    key: { id: string; agent: string };
    ts?: Date;
    tool?: string;
    decision?: 'allowed' | 'denied';
  } & Partial<{
    reason: string;
    cost_micros: number;
    reserved_micros: number;
    cost_status: 'settled' | 'estimated';
    outcome: 'succeeded' | 'pending' | 'failed';
  }>,
): Promise<string> {
  const id = uuidv7();
  const denied = o.decision === 'denied';
  await db
    .insertInto('audit_log')
    .values({
      id,
      ts: o.ts ?? new Date(),
      key_id: o.key.id,
      agent: o.key.agent,
      run_id: null,
      policy: 'texts',
      policy_version: 1,
      tool: o.tool ?? 'send_sms',
      vendor: 'twilio',
      operation: 'POST /Messages',
      account: null,
      decision: o.decision ?? 'allowed',
      reason: o.reason ?? null,
      outcome: o.outcome ?? (denied ? 'failed' : 'succeeded'),
      reserved_micros: o.reserved_micros ?? 0,
      cost_micros: o.cost_micros ?? 0,
      cost_status: o.cost_status ?? (denied ? 'none' : 'settled'),
      amount: null,
      currency: null,
      vendor_request_id: null,
      vendor_object_id: null,
      http_status: null,
      error: null,
      request: null,
      args_hash: null,
      budget: '[]',
      sandbox: false,
      latency_ms: 4,
      settled_at: null,
      metadata: '{}',
    })
    .execute();
  return id;
}

const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000);

describe('the 2 a.m. story', () => {
  it('shows a looping key as the top row after sign-in, revokes it from that row, and its next call is refused key_revoked', async () => {
    // The night so far: a big spender earlier (the dollars-only bar's top), a helper texting now and then.
    leash.vendors.reset();
    const big = await keyFor(leash.tdb.db, { policy: 'texts', agent: 'refund-batch', runId: 'nightly' });
    for (const m of [12, 11, 10])
      await auditRow(leash.tdb.db, { key: big, ts: minutesAgo(m), cost_micros: 40_000_000 });
    // ...counted in today's budget windows, as admission would have.
    const today = dayStart(await databaseNow(leash.tdb.db));
    for (const scope of [`key:${big.id}`, 'policy:texts'])
      await leash.tdb.db
        .insertInto('spend_windows')
        .values({ scope, kind: 'usd_day', window_start: today, spent_micros: 120_000_000 })
        .onConflict((c) =>
          c
            .columns(['scope', 'kind', 'window_start'])
            .doUpdateSet((eb) => ({ spent_micros: eb('spend_windows.spent_micros', '+', 120_000_000) })),
        )
        .execute();
    const helper = await keyFor(leash.tdb.db, { policy: 'texts', agent: 'reminders', runId: 'r-77' });
    for (let i = 0; i < 2; i++) expect((await sms(helper.key, i)).ok).toBe(true);

    // A key starts looping: four texts a second.
    const looper = await keyFor(leash.tdb.db, { policy: 'texts', agent: 'sms-looper', runId: 'night-run' });
    const agent = loop(looper.key);
    try {
      await expect.poll(() => agent.answers.length, { timeout: WAIT_MS }).toBeGreaterThanOrEqual(8);
      expect(agent.answers.every((r) => r.ok)).toBe(true);

      // The operator signs in; the looping agent is the top row (the product asks within 5 s of sign-in).
      const started = Date.now();
      const { context, page } = await signedIn();
      try {
        const top = page.locator(`#agents-table tbody tr:first-child[data-key-id="${looper.id}"]`);
        await top.waitFor({ timeout: WAIT_MS });
        const seconds = (Date.now() - started) / 1000;
        expect(seconds).toBeLessThan(WAIT_MS / 1000);
        await expect(top.locator('.c-who').textContent()).resolves.toMatch(/sms-looper.*night-run.*texts/);
        await expect(top.locator('.rate').textContent()).resolves.toMatch(/^[1-9]\d*\/min$/);
        expect(await top.locator('svg.spark polyline').count()).toBe(1);
        await expect(top.locator('.c-spend').textContent()).resolves.toMatch(
          // The policy's cap binds: the big spender used 40% of it; the looper's own share is small.
          /^40% of policy texts's cap\$120\.\d+ of \$300\.00 · this key \$0\.\d+$/,
        );
        // The dollars-only bars put the big spender first; the agents view puts the loop first.
        await expect
          .poll(() => page.locator('#spend-agents .bar').first().getAttribute('data-name'), {
            timeout: WAIT_MS,
          })
          .toBe('refund-batch');
        const shot = page.locator('#agents');
        await shot.screenshot({ path: join(ARTIFACTS, 'console-agents.png') });
        if (process.env.LEASH_DOCS_SCREENSHOT === '1')
          await copyFile(join(ARTIFACTS, 'console-agents.png'), 'docs/console-agents.png');

        // Revoke from that row: the button, then Revoke in the confirmation (with a reason).
        await top.locator('button[data-revoke="key"]').click();
        await page.locator('#confirm').waitFor({ state: 'visible' });
        await expect(page.locator('#confirm-text').textContent()).resolves.toContain(looper.id);
        await page.fill('#confirm-reason', 'sms loop at 2 a.m.');
        await page.click('#confirm-revoke');

        const refused = await agent.refused;
        expect(refused).toMatchObject({ ok: false, failure: { code: 'key_revoked' } });
        // Every call before it reached Twilio; the refused one did not.
        expect(leash.vendors.twilio.received.length).toBe(agent.answers.filter((r) => r.ok).length + 2);
        await expect
          .poll(() => page.locator('#toast').textContent(), { timeout: WAIT_MS })
          .toMatch(/Revoked 1 key/);
        await page.locator(`#agents-table tr[data-key-id="${looper.id}"]`).waitFor({ state: 'detached' });
        const row = await leash.tdb.db
          .selectFrom('vault_keys')
          .select('revoked_reason')
          .where('id', '=', looper.id)
          .executeTakeFirstOrThrow();
        expect(row.revoked_reason).toBe('sms loop at 2 a.m.');
      } finally {
        await context.close();
      }
    } finally {
      agent.stop();
      await agent.refused.catch(() => undefined);
    }
  }, 90_000);
});

describe('acting where you look', () => {
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    ({ context, page } = await signedIn());
  });
  afterAll(async () => {
    await context?.close();
  });

  it('revokes a call’s run from its details in two clicks, and the run’s next call is refused key_revoked', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'texts', agent: 'detail-bot', runId: 'ticket-d' });
    const denied = await sms(key.key, 1, '+442071838750');
    expect(denied).toMatchObject({ ok: false, failure: { code: 'recipient_not_allowed' } });
    const id = denied.ok ? '' : String(denied.failure.audit_id);
    await page.locator(`tr[data-audit-id="${id}"] button.link`).click({ timeout: WAIT_MS });
    await page.locator('#details').waitFor({ state: 'visible' });
    await page.locator('#details-actions button[data-revoke="run"]').click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await expect(page.locator('#confirm-text').textContent()).resolves.toContain('ticket-d');
    await screenshot(page, 'details-revoke-run');
    await page.click('#confirm-revoke');
    await expect
      .poll(() => page.locator('#toast').textContent(), { timeout: WAIT_MS })
      .toMatch(/Revoked 1 key/);

    leash.vendors.reset();
    const after = await sms(key.key, 2);
    expect(after).toMatchObject({ ok: false, failure: { code: 'key_revoked' } });
    expect(leash.vendors.requests()).toBe(0);
  });

  it('reads amounts as money: $40.00 on the approval, minor units only in the details', async () => {
    const key = await keyFor(leash.tdb.db, { policy: 'refunds', agent: 'refund-helper', runId: 'ticket-m' });
    const payment = leash.vendors.stripe.addPayment({ customer: 'cus_A', amount: 50_000 });
    const held = await runTool(leash.deps, key.key, 'issue_refund', {
      payment_intent: payment.payment_intent,
      amount: 4000,
    });
    expect(held).toMatchObject({ ok: false, failure: { code: 'approval_required' } });
    const approval = held.ok ? '' : String(held.failure.details?.approval_id);
    const auditId = held.ok ? '' : String(held.failure.audit_id);
    const card = page.locator(`article[data-approval-id="${approval}"]`);
    await card.waitFor({ timeout: WAIT_MS });
    const text = (await card.locator('.card-head').textContent()) ?? '';
    expect(text).toContain('$40.00');
    expect(text).not.toMatch(/minor|4000/);

    await page.locator(`tr[data-audit-id="${auditId}"] button.link`).click({ timeout: WAIT_MS });
    const details = page.locator('#details');
    await details.waitFor({ state: 'visible' });
    await expect(details.textContent()).resolves.toContain('$40.00 (4000 USD minor units)');
    await page.keyboard.press('Escape');
    await details.waitFor({ state: 'hidden' });
  });
});

describe('live activity layout', () => {
  let rest = '';
  let estimate = '';

  beforeAll(async () => {
    const key = await keyFor(leash.tdb.db, {
      policy: 'texts',
      agent: 'sdk-agent-with-a-rather-long-name',
      runId: 'batch-2026-12-06-night',
    });
    rest = await auditRow(leash.tdb.db, {
      key,
      tool: REST_TOOL,
      decision: 'denied',
      reason: 'recipient_not_allowed',
    });
    estimate = await auditRow(leash.tdb.db, {
      key,
      tool: REST_TOOL,
      reserved_micros: 8300,
      cost_status: 'estimated',
      outcome: 'pending',
    });
  });

  /** The most any of these elements holds beyond its own width (0 or less: nothing cut off or scrolled out). */
  const hiddenBeyond = (page: Page, selector: string) =>
    page.evaluate(
      `Math.max(...[...document.querySelectorAll(${JSON.stringify(selector)})].map((el) => el.scrollWidth - el.clientWidth))`,
    );
  const overflow = (page: Page) => page.evaluate('document.documentElement.scrollWidth - window.innerWidth');
  /** The right edge of the rightmost of these elements, in px from the window's left. */
  const rightmost = async (page: Page, selector: string) =>
    Number(
      await page.evaluate(
        `Math.max(...[...document.querySelectorAll(${JSON.stringify(selector)})].map((el) => el.getBoundingClientRect().right))`,
      ),
    );

  it('cuts no time, outcome or USD at 1280 px, and a long REST name leaves the reason in view', async () => {
    const { context, page } = await signedIn(1280);
    try {
      await page.locator(`tr[data-audit-id="${rest}"]`).waitFor({ timeout: WAIT_MS });
      await page.locator(`tr[data-audit-id="${estimate}"]`).waitFor({ timeout: WAIT_MS });
      await screenshot(page, 'agents-live-1280');
      expect(await overflow(page)).toBeLessThanOrEqual(0);
      expect(await hiddenBeyond(page, '.table-wrap')).toBeLessThanOrEqual(0);
      for (const cell of ['c-time', 'c-outcome', 'c-usd'])
        expect(await hiddenBeyond(page, `#audit td.${cell}, #audit th.${cell}`), cell).toBeLessThanOrEqual(0);
      await expect(page.locator(`tr[data-audit-id="${estimate}"] td.c-usd`).textContent()).resolves.toBe(
        '~$0.0083',
      );
      // The REST name is cut (its title holds it); the reason starts well inside its cell.
      const cell = await page.locator(`tr[data-audit-id="${rest}"] td.c-decision`).boundingBox();
      const reason = await page.locator(`tr[data-audit-id="${rest}"] .reason`).boundingBox();
      expect(cell && reason && cell.x + cell.width - reason.x).toBeGreaterThan(60);
      await expect(page.locator(`tr[data-audit-id="${rest}"] td.c-tool`).getAttribute('title')).resolves.toBe(
        REST_TOOL,
      );
      // The agents view's revoke buttons are all in view.
      expect(await hiddenBeyond(page, '#agents-table td')).toBeLessThanOrEqual(1);
      expect(await rightmost(page, '#agents-table button')).toBeLessThanOrEqual(1280);
    } finally {
      await context.close();
    }
  });

  it('lays rows out as cards at 390 px: nothing scrolls sideways', async () => {
    const { context, page } = await signedIn(390);
    try {
      await page.locator(`tr[data-audit-id="${rest}"]`).waitFor({ timeout: WAIT_MS });
      await page.locator('#agents-table tbody tr').first().waitFor({ timeout: WAIT_MS });
      await screenshot(page, 'agents-phone');
      expect(await overflow(page)).toBeLessThanOrEqual(0);
      expect(await hiddenBeyond(page, '.table-wrap')).toBeLessThanOrEqual(0);
      const display = async (sel: string) =>
        String(
          await page.evaluate(
            `(document.querySelector(${JSON.stringify(sel)}) && getComputedStyle(document.querySelector(${JSON.stringify(sel)})).display) || ''`,
          ),
        );
      // Polled: a row re-rendered between finding and reading it has no style.
      await expect.poll(() => display('#audit tbody tr'), { timeout: WAIT_MS }).toBe('grid');
      await expect.poll(() => display('#agents-table tbody tr'), { timeout: WAIT_MS }).toBe('grid');
      expect(await rightmost(page, '#agents-table button, #audit tbody td')).toBeLessThanOrEqual(390);
      // The reason is on the card, not cut to nothing.
      const reason = await page.locator(`tr[data-audit-id="${rest}"] .reason`).boundingBox();
      expect(reason?.width).toBeGreaterThan(60);
    } finally {
      await context.close();
    }
  });
});

describe('colour contrast (axe)', () => {
  /** axe-core's colour-contrast violations under `selector`, as "target: summary" lines. */
  const contrast = async (page: Page, selector: string): Promise<string[]> =>
    JSON.parse(
      String(
        await page.evaluate(`axe.run(${JSON.stringify(selector)}, { runOnly: ['color-contrast'] }).then((r) =>
          JSON.stringify(r.violations.flatMap((v) => v.nodes.map((n) => n.target.join(' ') + ': ' + n.failureSummary))))`),
      ),
    ) as string[];

  it.each(['light', 'dark'] as const)('passes on a hovered and a flashed live row (%s)', async (scheme) => {
    const key = await keyFor(leash.tdb.db, { policy: 'texts', agent: `contrast-${scheme}`, runId: 'c-1' });
    const ids = [
      await auditRow(leash.tdb.db, { key, cost_micros: 8300 }),
      await auditRow(leash.tdb.db, {
        key,
        reserved_micros: 8300,
        cost_status: 'estimated',
        outcome: 'pending',
      }),
      await auditRow(leash.tdb.db, { key, decision: 'denied', reason: 'loop_detected' }),
    ];
    const { context, page } = await signedIn(1280);
    try {
      await page.emulateMedia({ colorScheme: scheme });
      for (const id of ids) await page.locator(`tr[data-audit-id="${id}"]`).waitFor({ timeout: WAIT_MS });
      for (const id of ids) {
        await page.hover(`tr[data-audit-id="${id}"] td.c-agent`);
        expect(await contrast(page, `tr[data-audit-id="${id}"]`), `hovered ${id}`).toEqual([]);
      }
      await page.mouse.move(0, 0);
      // The settle flash, held at its first frame (its strongest colour).
      await page.evaluate(`for (const id of ${JSON.stringify(ids)}) document.querySelector('tr[data-audit-id="' + id + '"]').classList.add('flash');
        for (const a of document.getAnimations()) { a.pause(); a.currentTime = 0; }`);
      for (const id of ids)
        expect(await contrast(page, `tr[data-audit-id="${id}"]`), `flashed ${id}`).toEqual([]);
      expect(await contrast(page, '#agents'), 'agents view').toEqual([]);
      await screenshot(page, `contrast-${scheme}`);
    } finally {
      await context.close();
    }
  });
});
