// Covers the CLI at 80 columns: ids and times whole, lines that fit, hidden columns said once and back with --wide
// (approvals, audit query, keys, policies, the replay's changes), the tail one line per row, "reserved" money and
// "held" calls, help that fits, db status before init.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Insertable } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { uuidv7 } from '../src/audit/uuid.js';
import type { AuditLogTable } from '../src/db/schema.js';
import { runTool, type PipelineDeps, type ToolCallResult } from '../src/pipeline/run-tool.js';
import type { Catalog } from '../src/pipeline/tool.js';
import { getApproval } from '../tools/leash/get-approval.js';
import { getBudget } from '../tools/leash/get-budget.js';
import { stripeVendor } from '../tools/stripe/client.js';
import { getPayment } from '../tools/stripe/get-payment.js';
import { issueRefund } from '../tools/stripe/issue-refund.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { childEnv, LEASH_BIN } from './support/cli.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, pipelineFor, settledRun, testConfig } from './support/governance.js';
import { cli } from './support/run-cli.js';

let tdb: TestDatabase;
let fake: StripeFake;
let deps: PipelineDeps;
let home: string;
let env: Record<string, string>;
const catalog: Catalog = {
  tools: new Map([issueRefund, getPayment, getBudget, getApproval].map((t) => [t.name, t])),
  vendors: new Map([['stripe', stripeVendor]]),
};
const POLICY = {
  name: 'eighty-columns',
  limits: { daily_usd: 400 },
  tools: {
    issue_refund: { customers: ['cus_A'], approval: { above_usd: 100, expires: '30m' } },
    get_payment: null,
  },
};
const AGENT = 'support-bot-eu';
const RUN = 'run-2026-12-06';
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const ISO = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g;

/** Runs `leash <argv>` in-process as a terminal COLUMNS wide would (no COLUMNS: piped, unlimited). */
const at = (columns: number | undefined, ...argv: string[]) =>
  cli(argv, columns === undefined ? env : { ...env, COLUMNS: String(columns) });
const json = async <T>(...argv: string[]) => {
  const r = await at(undefined, ...argv, '--json');
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
};
const lines = (text: string) => text.trimEnd().split('\n');
const longest = (text: string) => Math.max(...lines(text).map((l) => l.length));

function approvalOf(r: ToolCallResult): string {
  if (r.ok || r.failure.code !== 'approval_required') throw new Error(`not held: ${JSON.stringify(r)}`);
  return (r.failure.details as { approval_id: string }).approval_id;
}

let keyId = '';
let approvals: string[] = [];

beforeAll(async () => {
  tdb = await freshDatabase(4);
  fake = await startStripeFake(false);
  home = await mkdtemp(join(tmpdir(), 'leash-80col-'));
  const config = testConfig({ STRIPE_SECRET_KEY: 'sk_test_eighty_columns', LEASH_STRIPE_BASE_URL: fake.url });
  deps = pipelineFor(tdb.db, catalog, config);
  await applyTestPolicy(tdb.db, catalog, POLICY);
  env = { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' };
  const key = await keyFor(tdb.db, {
    policy: POLICY.name,
    agent: AGENT,
    runId: RUN,
    label: 'the refund agent for the EU support queue, started by the nightly run',
    expiresAt: new Date(Date.now() + 3_600_000),
  });
  keyId = key.id;
  const paid = fake.addPayment({ customer: 'cus_A', amount: 90_000 });
  const other = fake.addPayment({ customer: 'cus_B', amount: 5_000 });
  // Allowed and settled, denied, and two held for a person (one then approved with a note).
  expect(
    (await settledRun(deps, key.key, 'issue_refund', { payment_intent: paid.payment_intent, amount: 3_000 }))
      .ok,
  ).toBe(true);
  expect(
    await runTool(deps, key.key, 'issue_refund', { payment_intent: other.payment_intent, amount: 1_000 }),
  ).toMatchObject({
    ok: false,
    failure: { code: 'customer_not_allowed' },
  });
  approvals = [
    approvalOf(
      await runTool(deps, key.key, 'issue_refund', { payment_intent: paid.payment_intent, amount: 15_000 }),
    ),
    approvalOf(
      await runTool(deps, key.key, 'issue_refund', { payment_intent: paid.payment_intent, amount: 25_000 }),
    ),
  ];
  const decided = await at(
    undefined,
    'approvals',
    'approve',
    approvals[0] ?? '',
    '--by',
    'alice',
    '--note',
    'the customer called and confirmed the amount twice',
  );
  expect(decided.code, decided.stderr).toBe(0);
});

afterAll(async () => {
  await fake?.close();
  await tdb?.close();
  await rm(home, { recursive: true, force: true });
});

/** A pending call's row, as another leash process would commit it: $0.50 reserved until it settles. */
function pendingRow(agent: string): Insertable<AuditLogTable> & { id: string; ts: Date } {
  return {
    id: uuidv7(),
    ts: new Date(),
    key_id: keyId,
    agent,
    run_id: RUN,
    policy: POLICY.name,
    policy_version: 1,
    tool: 'issue_refund',
    vendor: 'stripe',
    operation: null,
    account: null,
    decision: 'allowed',
    reason: null,
    outcome: 'pending',
    reserved_micros: 500_000,
    cost_micros: 0,
    cost_status: 'estimated',
    usd_micros: 500_000,
    amount: 50,
    currency: 'usd',
    vendor_request_id: null,
    vendor_object_id: null,
    http_status: null,
    error: null,
    request: null,
    args_hash: null,
    latency_ms: null,
    settled_at: null,
    budget: '[]',
    metadata: '{}',
    sandbox: false,
  };
}

describe('tables at 80 columns', () => {
  it('prints approval ids whole, hides the lower columns and says so once, and --wide brings them back', async () => {
    const listed = await json<{ id: string; expires_at: string }[]>('approvals', 'list');
    expect(listed.map((a) => a.id).sort()).toEqual([...approvals].sort());

    const narrow = await at(80, 'approvals', 'list');
    expect(narrow.code, narrow.stderr).toBe(0);
    expect(longest(narrow.stdout)).toBeLessThanOrEqual(80);
    expect(narrow.stdout.match(UUID)?.sort()).toEqual([...approvals].sort());
    expect(lines(narrow.stdout)[0]).toMatch(/^ID\s+STATUS\s/);
    expect(narrow.stdout).not.toContain('…');
    const hidden = lines(narrow.stdout).filter((l) => l.includes('hidden'));
    expect(hidden).toHaveLength(1);
    expect(hidden[0]).toMatch(/^\d+ columns hidden.*; --wide shows them$/);
    // The id as printed is the one `approvals` takes.
    const pending =
      lines(narrow.stdout)
        .find((l) => l.includes('pending'))
        ?.match(UUID)?.[0] ?? '';
    const show = await at(80, 'approvals', 'show', pending);
    expect([show.code, show.stdout]).toEqual([0, expect.stringContaining(`status            pending`)]);

    for (const wide of [
      await at(80, 'approvals', 'list', '--wide'),
      await at(undefined, 'approvals', 'list'),
    ]) {
      expect(lines(wide.stdout)[0]).toMatch(
        /^ID\s+STATUS\s+AGENT\s+RUN_ID\s+TOOL\s+USD\s+EXPIRES_AT\s+DECIDED_BY\s+NOTE$/,
      );
      expect(wide.stdout).toContain('the customer called and confirmed the amount twice');
      for (const a of listed) expect(wide.stdout).toContain(new Date(a.expires_at).toISOString());
      expect(wide.stdout).not.toContain('hidden');
    }
    const roomy = await at(200, 'approvals', 'list');
    expect(longest(roomy.stdout)).toBeLessThanOrEqual(200);
    expect(lines(roomy.stdout)[0]).toMatch(/AGENT\s+RUN_ID\s+TOOL\s+USD\s+EXPIRES_AT/);
  });

  it('prints audit query rows with their id and time whole, and every column with --wide', async () => {
    const rows = await json<{ id: string; ts: string }[]>('audit', 'query', '--key', keyId);
    expect(rows.length).toBeGreaterThanOrEqual(4);

    const narrow = await at(80, 'audit', 'query', '--key', keyId);
    expect(narrow.code, narrow.stderr).toBe(0);
    expect(longest(narrow.stdout)).toBeLessThanOrEqual(80);
    const body = lines(narrow.stdout).slice(1, 1 + rows.length);
    // Each row's line holds its full time and full id; a long decision is what gives way.
    expect(body.map((l) => [l.match(ISO)?.[0], l.match(UUID)?.[0]])).toEqual(rows.map((r) => [r.ts, r.id]));
    expect(narrow.stdout).toMatch(/denied:customer\S*…/);
    expect(lines(narrow.stdout).at(-1)).toMatch(/^\d+ columns hidden.*--wide shows them$/);

    const wide = await at(80, 'audit', 'query', '--key', keyId, '--wide');
    expect(lines(wide.stdout)[0]).toMatch(
      /^TS\s+AGENT\s+RUN_ID\s+TOOL\s+DECISION\s+OUTCOME\s+COST\s+RESERVED\s+VENDOR_OBJECT_ID\s+ID\s+APPROVAL$/,
    );
    expect(wide.stdout).toContain('denied:customer_not_allowed');
    expect(wide.stdout).toContain('approved by alice');
    expect(wide.stdout).toMatch(/\$30\.00\s+-\s+re_\w+\s/);
    expect(wide.stdout).not.toContain('hidden');

    // A wider terminal shows more of them, still within its width.
    const roomy = await at(200, 'audit', 'query', '--key', keyId);
    expect(longest(roomy.stdout)).toBeLessThanOrEqual(200);
    expect(lines(roomy.stdout)[0]).toMatch(/^TS\s+AGENT\s+RUN_ID\s+TOOL\s+DECISION\s+OUTCOME\s+COST/);
  });

  it('fits every other table in 80 columns with key ids and times whole', async () => {
    for (const argv of [
      ['keys', 'list'],
      ['spend', '--by', 'key'],
      ['spend', '--by', 'agent'],
      ['spend', '--by', 'policy'],
      ['spend', '--by', 'day'],
      ['policies', 'list'],
      ['vendors', 'list'],
    ]) {
      const r = await at(80, ...argv);
      expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(0);
      expect(longest(r.stdout), `${argv.join(' ')}:\n${r.stdout}`).toBeLessThanOrEqual(80);
      // Nothing is cut but free text: never a time.
      expect(r.stdout).not.toMatch(/\d{4}-[-\dT:.]*…/);
    }
    const keys = await at(80, 'keys', 'list');
    expect(keys.stdout).toMatch(new RegExp(`^${keyId}\\s`, 'm'));
    const spend = await at(80, 'spend', '--by', 'key');
    expect(spend.stdout).toMatch(new RegExp(`^${keyId}\\s+${AGENT}\\s`, 'm'));
    const label = 'the refund agent for the EU support queue, started by the nightly run';
    expect((await at(80, 'keys', 'list', '--wide')).stdout).toContain(label);
  });
});

describe('keys, policies and replay changes at 80 columns', () => {
  /** The body lines of a table: after its header, before any line saying columns are hidden. */
  const bodyOf = (text: string, header: RegExp) => {
    const all = lines(text);
    const at = all.findIndex((l) => header.test(l));
    expect(at, text).toBeGreaterThanOrEqual(0);
    return all.slice(at + 1).filter((l) => !l.includes('--wide shows them'));
  };

  it('lists keys with id, status and expiry whole, cutting only the label', async () => {
    const [k] = await json<{ id: string; expires_at: string; status: string }[]>(
      'keys',
      'list',
      '--agent',
      AGENT,
    );
    const expires = new Date(k?.expires_at ?? '').toISOString();
    const narrow = await at(80, 'keys', 'list', '--agent', AGENT);
    expect(longest(narrow.stdout), narrow.stdout).toBeLessThanOrEqual(80);
    expect(lines(narrow.stdout)[0]).toMatch(/^ID\s+AGENT\s+(POLICY\s+)?STATUS\s+EXPIRES_AT$/);
    expect(bodyOf(narrow.stdout, /^ID\s/)).toEqual([
      expect.stringMatching(new RegExp(`^${keyId}\\s+${AGENT}\\s+.*active\\s+${expires}$`)),
    ]);
    expect(lines(narrow.stdout).at(-1)).toMatch(
      /columns hidden \(run_id, (policy, )?label\); --wide shows them$/,
    );

    // Room for the label: it is the one cut, the times and ids still whole.
    const roomy = await at(110, 'keys', 'list', '--agent', AGENT);
    expect(longest(roomy.stdout), roomy.stdout).toBeLessThanOrEqual(110);
    expect(lines(roomy.stdout)[0]).toMatch(/^ID\s+AGENT\s+RUN_ID\s+POLICY\s+STATUS\s+EXPIRES_AT\s+LABEL$/);
    const [row = ''] = bodyOf(roomy.stdout, /^ID\s/);
    expect(row).toMatch(new RegExp(`^${keyId}\\s.*\\s${expires}\\s+the refund\\S*.*…$`));
    expect(roomy.stdout).not.toContain('hidden');
  });

  it('lists policies with name, version, keys and update time whole, cutting only the tool list', async () => {
    const narrow = await at(80, 'policies', 'list');
    expect(narrow.code, narrow.stderr).toBe(0);
    expect(longest(narrow.stdout), narrow.stdout).toBeLessThanOrEqual(80);
    expect(lines(narrow.stdout)[0]).toMatch(/^NAME\s+LATEST_VERSION\s+TOOLS\s+ACTIVE_KEYS\s+UPDATED_AT$/);
    const [row = ''] = bodyOf(narrow.stdout, /^NAME\s/);
    expect(row).toMatch(/^eighty-columns\s+1\s+\S+…\s+\d+\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(lines(narrow.stdout).at(-1)).toBe(
      '2 columns hidden (shadow_version, applied_by); --wide shows them',
    );
    const wide = await at(80, 'policies', 'list', '--wide');
    expect(wide.stdout).toContain('get_payment,issue_refund');
    expect(lines(wide.stdout)[0]).toMatch(/^NAME\s+LATEST_VERSION\s+SHADOW_VERSION\s.*APPLIED_BY$/);
  });

  it('prints the replay changes with audit ids whole and what each call is now, hiding ts, tool and usd', async () => {
    // Only cus_B's refunds: the calls for cus_A (allowed, held) are now refused, the one for cus_B now allowed.
    const file = join(home, 'cus-b-only.yaml');
    await writeFile(file, 'name: eighty-columns\ntools:\n  issue_refund: { customers: [cus_B] }\n');
    const report = await at(undefined, 'policies', 'replay', file, '--agent', AGENT, '--json');
    expect(report.code, report.stderr).toBe(1);
    const { changes } = JSON.parse(report.stdout) as { changes: { id: string; was: string; now: string }[] };
    expect(changes.map((c) => [c.was, c.now]).sort()).toEqual([
      ['allowed', 'customer_not_allowed'],
      ['customer_not_allowed', 'allowed'],
      ['held', 'customer_not_allowed'],
      ['held', 'customer_not_allowed'],
    ]);
    const changesOf = (text: string) => text.slice(text.indexOf('changes:\n') + 'changes:\n'.length);

    const narrow = await at(80, 'policies', 'replay', file, '--agent', AGENT);
    expect(narrow.code).toBe(1);
    expect(longest(narrow.stdout), narrow.stdout).toBeLessThanOrEqual(80);
    const table = changesOf(narrow.stdout);
    expect(lines(table)[0]).toMatch(/^ID\s+WAS\s+NOW$/);
    expect(bodyOf(table, /^ID\s/).sort()).toEqual(
      changes.map((c) => `${c.id}  ${c.was.padEnd(20)}  ${c.now}`).sort(),
    );
    expect(lines(table).at(-1)).toBe('3 columns hidden (ts, tool, usd); --wide shows them');

    // Narrower: what it was gives way first; what it is now keeps 17 characters.
    const tight = await at(65, 'policies', 'replay', file, '--agent', AGENT);
    expect(longest(changesOf(tight.stdout))).toBeLessThanOrEqual(65);
    const rows = bodyOf(changesOf(tight.stdout), /^ID\s/);
    expect(rows.map((l) => l.split(/\s+/)[0]).sort()).toEqual(changes.map((c) => c.id).sort());
    expect(rows.map((l) => l.split(/\s+/).slice(1)).sort()).toEqual([
      ['allowed', 'customer_not_all…'],
      ['custome…', 'allowed'],
      ['held', 'customer_not_all…'],
      ['held', 'customer_not_all…'],
    ]);

    const wide = await at(80, 'policies', 'replay', file, '--agent', AGENT, '--wide');
    expect(wide.stdout).toMatch(/^TS\s+ID\s+TOOL\s+WAS\s+NOW\s+USD$/m);
  });
});

describe('audit tail at 80 columns', () => {
  it('prints one line per row that fits, with times whole, and every column with --wide', async () => {
    const narrow = await at(80, 'audit', 'tail', '--agent', AGENT);
    expect(narrow.code, narrow.stderr).toBe(0);
    expect(longest(narrow.stdout)).toBeLessThanOrEqual(80);
    const [header = '', ...rest] = lines(narrow.stdout);
    expect(header).toMatch(/^TS\s+AGENT\s+TOOL\s+DECISION$/);
    const rows = rest.filter((l) => !l.includes('hidden'));
    expect(rows).toHaveLength(4);
    for (const l of rows) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z {2}support-bot-eu {2}/);
    // The decision is the last column at 80: a long one is cut, never a time.
    expect(rows.find((l) => l.includes('denied'))).toMatch(/denied:customer_not_\S*…$/);
    expect(rest.filter((l) => l.includes('hidden'))).toEqual([
      expect.stringMatching(/^\d+ columns hidden.*--wide shows them$/),
    ]);

    const wide = await at(80, 'audit', 'tail', '--agent', AGENT, '--wide');
    expect(lines(wide.stdout)[0]).toMatch(
      /^TS\s+AGENT\s+RUN_ID\s+TOOL\s+DECISION\s+OUTCOME\s+COST\s+VENDOR_OBJECT_ID$/,
    );
    expect(wide.stdout).toContain('denied:customer_not_allowed');
    expect(wide.stdout).toMatch(
      /approved by alice at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z: the customer called and confirmed the amount twice/,
    );
    expect(wide.stdout).not.toContain('hidden');

    const roomy = await at(200, 'audit', 'tail', '--agent', AGENT);
    expect(longest(roomy.stdout)).toBeLessThanOrEqual(200);
    expect(lines(roomy.stdout)[0]).toMatch(/^TS\s+AGENT\s+RUN_ID\s+TOOL\s+DECISION\s+OUTCOME\s+COST/);
  });

  it('follows at 80 columns: a new row and its settlement are one line each, cut to fit, times whole', async () => {
    const agent = `a-rather-long-agent-name-${randomUUID().slice(0, 8)}`;
    const child = spawn(process.execPath, [LEASH_BIN, 'audit', 'tail', '-f', '-n', '0', '--agent', agent], {
      env: childEnv({ DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent', COLUMNS: '80' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      // The line under the header says the tail is following (it comes once the backlog, none here, is out).
      await vi.waitFor(() => expect(out + err).toContain('--wide shows them'), {
        timeout: 30_000,
        interval: 50,
      });
      const row = pendingRow(agent);
      await tdb.db.insertInto('audit_log').values(row).execute();
      await vi.waitFor(() => expect(lines(out)).toHaveLength(3), { timeout: 30_000, interval: 50 });
      await tdb.db
        .updateTable('audit_log')
        .set({ outcome: 'succeeded', cost_micros: 300_000, reserved_micros: 0, cost_status: 'settled' })
        .where('id', '=', row.id)
        .execute();
      await vi.waitFor(() => expect(lines(out)).toHaveLength(4), { timeout: 30_000, interval: 50 });
      const [header, note, added, settled] = lines(out);
      expect(header).toMatch(/^TS\s+AGENT\s+TOOL\s+DECISION$/);
      expect(note).toMatch(/columns hidden/);
      for (const [l, decision] of [
        [added, 'allowed'],
        [settled, 'settled'],
      ] as const) {
        expect(l?.length).toBeLessThanOrEqual(80);
        expect(l).toMatch(
          new RegExp(`^${row.ts.toISOString()} {2}a-rather-long-agent\\S*… {2}issue_refund\\s+${decision}$`),
        );
      }
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, err).toBe(0);
  });

  it('prints its header only once the database answered', async () => {
    for (const follow of [[], ['-f']]) {
      const r = await cli(['audit', 'tail', ...follow], {
        ...env,
        COLUMNS: '80',
        DATABASE_URL: 'postgres://leash:x@127.0.0.1:1/leash',
      });
      expect([r.code, r.stdout]).toEqual([4, '']);
      expect(r.stderr).toContain('cannot reach the database');
    }
  });
});

describe('one word each: reserved money, held calls', () => {
  it('says "reserved" for money a pending call has reserved, and "held" only for calls waiting for a person', async () => {
    const agent = `reserving-${randomUUID().slice(0, 8)}`;
    await tdb.db.insertInto('audit_log').values(pendingRow(agent)).execute();
    const tail = await at(undefined, 'audit', 'tail', '--agent', agent);
    expect(tail.stdout).toMatch(/allowed\s+pending\s+\$0\.50 reserved/);
    const spend = await at(undefined, 'spend', '--by', 'agent');
    expect(lines(spend.stdout)[1]).toMatch(/^AGENT\s+COST\s+RESERVED\s+REQUESTS\s+DENIED$/);
    expect(spend.stdout).toMatch(new RegExp(`${agent}\\s+\\$0\\.00\\s+\\$0\\.50\\s+1\\s+0`));
    const held = await at(undefined, 'audit', 'query', '--key', keyId, '--decision', 'held');
    expect(held.stdout).toContain('held:pending');
    // "held" is a decision, never an amount.
    for (const r of [tail, spend, held]) expect(r.stdout).not.toMatch(/\$[\d.,]+ held|HELD/);
    expect((await at(undefined, 'spend', '--help')).stdout).not.toMatch(/\bhold|held =/);
    expect((await at(undefined, 'audit', 'query', '--help')).stdout).toContain('costing or reserving');
  });
});

describe('help and status', () => {
  it('lists --wide once in audit query --help', async () => {
    const help = (await at(undefined, 'audit', 'query', '--help')).stdout;
    expect(help.match(/^\s+--wide\b/gm)).toHaveLength(1);
  });

  it('wraps every command help to 80 columns', async () => {
    // Groups and their commands as the help lists them (--help never runs a command).
    const root = await cli(['--help'], env);
    expect(longest(root.stdout), root.stdout).toBeLessThanOrEqual(80);
    const groups = [...root.stdout.matchAll(/^ {2}([a-z]+) {2,}/gm)].map((m) => m[1] ?? '');
    expect(groups).toEqual(expect.arrayContaining(['keys', 'audit', 'approvals', 'spend', 'db']));
    for (const group of groups) {
      const page = await cli([group, '--help'], env);
      expect(longest(page.stdout), page.stdout).toBeLessThanOrEqual(80);
      const listed = page.stdout.split('\nCommands:\n')[1]?.split('\n\n')[0] ?? '';
      for (const [, name] of listed.matchAll(/^ {2}([a-z-]+) {2,}/gm)) {
        const help = await cli([group, name ?? '', '--help'], env);
        expect(help.code).toBe(0);
        expect(longest(help.stdout), help.stdout).toBeLessThanOrEqual(80);
      }
    }
  });

  it('says to run leash init when db status finds no database yet', async () => {
    const fresh = join(home, 'never-initialised');
    const r = await cli(['db', 'status'], { LEASH_HOME: fresh, LEASH_LOG: 'silent' });
    expect(r.code).toBe(4);
    expect(lines(r.stdout)[0]).toBe(
      'embedded PostgreSQL: not initialised; run `leash init` to set up LEASH_HOME and its database',
    );
  });
});
