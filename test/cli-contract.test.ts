// Covers the CLI contract across every command: --json everywhere, JSON errors, exit codes (not found 3, usage 2),
// snake_case keys, "did you mean", aligned help, tables that fit, colour rules, structural policy diff, safer defaults.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { cli, type CliResult } from './support/run-cli.js';

let tdb: TestDatabase;
let home: string;
let env: Record<string, string>;
let policyPath: string;
let keyId: string;
const leash = (...argv: string[]) => cli(argv, env);

const POLICY = `name: contract
limits: { daily_usd: 20 }
tools:
  issue_refund: { max_amount_usd: 10, customers: [cus_A, cus_B] }
  get_payment: { customers: [cus_A, cus_B] }
  get_budget: {}
`;

beforeAll(async () => {
  tdb = await freshDatabase(2);
  home = await mkdtemp(join(tmpdir(), 'leash-contract-'));
  env = {
    DATABASE_URL: tdb.url,
    LEASH_HOME: home,
    LEASH_LOG: 'silent',
    STRIPE_SECRET_KEY: 'sk_test_contract',
  };
  policyPath = join(home, 'contract.yaml');
  await writeFile(policyPath, POLICY);
  // An initialised home (a master key, so a keyed audit log), as every test here expects, whichever runs first.
  expect((await leash('init')).code).toBe(0);
  expect((await leash('policies', 'apply', policyPath)).code).toBe(0);
  const k = await leash(
    'keys',
    'create',
    '--agent',
    'bot',
    '--run',
    'r1',
    '--policy',
    'contract',
    '--expires-in',
    '1h',
    '--json',
  );
  keyId = (JSON.parse(k.stdout) as { id: string }).id;
  // One settled call, so spend and audit tables have a row to show.
  await tdb.db
    .insertInto('audit_log')
    .values({
      id: randomUUID(),
      key_id: keyId,
      agent: 'bot',
      run_id: 'r1',
      policy: 'contract',
      policy_version: 1,
      tool: 'issue_refund',
      decision: 'allowed',
      outcome: 'succeeded',
      reserved_micros: 0,
      cost_micros: 5_000_000,
      cost_status: 'settled',
      amount: 500,
      currency: 'usd',
      budget: '[]',
      metadata: '{}',
      sandbox: true,
    })
    .execute();
});

afterAll(async () => {
  await tdb.close();
  await rm(home, { recursive: true, force: true });
});

/** Every key of every object in `v`, at any depth, except inside `request`, `metadata` and `document` (user data). */
function keysOf(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) v.forEach((x) => keysOf(x, out));
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) {
      out.push(k);
      if (!['request', 'metadata', 'document', 'budget', 'details'].includes(k)) keysOf(x, out);
    }
  return out;
}

function parsesAsJson(r: CliResult, label: string): unknown {
  const text = r.stdout.trim();
  if (label === 'audit tail' && text === '') return undefined; // NDJSON of no rows is no lines
  expect(text, `${label}: ${r.stderr}`).not.toBe('');
  // NDJSON (audit tail) or one document.
  const values =
    text.startsWith('[') || !text.includes('\n{')
      ? [JSON.parse(text)]
      : text.split('\n').map((l) => JSON.parse(l) as unknown);
  for (const k of keysOf(values)) expect(k, label).toMatch(/^[a-z0-9_]+$/);
  return values[0];
}

describe('--json on every command', () => {
  it('prints JSON with snake_case keys from every command that prints data', async () => {
    const commands: string[][] = [
      ['init'],
      ['policies', 'validate', policyPath],
      ['policies', 'apply', policyPath],
      ['policies', 'list'],
      ['policies', 'show', 'contract'],
      ['policies', 'diff', 'contract'],
      ['policies', 'test', policyPath, '--call', '{"tool":"get_budget","args":{}}'],
      ['policies', 'replay', policyPath],
      ['keys', 'list'],
      ['keys', 'show', keyId],
      ['vendors', 'list'],
      ['audit', 'query'],
      ['audit', 'tail'],
      ['spend'],
      ['reconcile'],
      ['db', 'status'],
      ['db', 'url'],
      ['db', 'migrate'],
      ['keys', '--json'],
      ['--version', '--json'],
    ];
    for (const argv of commands) {
      const r = await leash(...argv, '--json');
      expect([0, 1], `${argv.join(' ')}: ${r.stderr}`).toContain(r.code);
      parsesAsJson(r, argv.join(' '));
    }
    // Commands that change something print what they did.
    const made = await leash(
      'keys',
      'create',
      '--agent',
      'bot2',
      '--policy',
      'contract',
      '--expires-in',
      '5m',
      '--json',
    );
    const id = (parsesAsJson(made, 'keys create') as { id: string }).id;
    parsesAsJson(await leash('keys', 'rotate', id, '--json'), 'keys rotate');
    parsesAsJson(await leash('keys', 'revoke', id, '--json'), 'keys revoke');
    parsesAsJson(
      await leash('vendors', 'set', 'stripe', '--name', 'x', '--from-env', 'STRIPE_SECRET_KEY', '--json'),
      'vendors set',
    );
    parsesAsJson(await leash('vendors', 'remove', 'stripe', '--name', 'x', '--json'), 'vendors remove');
  });

  it('reports errors under --json as one JSON object on stderr, for usage and not-found alike', async () => {
    for (const [argv, code, name] of [
      [['keys', 'show', 'aaaaaaaaaaaa', '--json'], 3, 'not_found'],
      [['keys', 'create', '--bogus', '--json'], 2, 'usage'],
      [['nosuch', '--json'], 2, 'usage'],
      [['serve', '--port', 'x', '--json'], 2, 'usage'],
      [['mcp', '--json'], 2, 'usage'],
      [['audit', 'query', '--since', 'soonish', '--json'], 2, 'usage'],
    ] as const) {
      const r = await leash(...argv);
      expect(r.code, argv.join(' ')).toBe(code);
      expect(r.stdout).toBe('');
      const e = JSON.parse(r.stderr) as { error: { code: string; exit_code: number; message: string } };
      expect(e.error).toMatchObject({ code: name, exit_code: code });
      expect(e.error.message.length).toBeGreaterThan(5);
    }
  });

  it('names db status fields in snake_case and money the same in --json as in tables', async () => {
    const status = JSON.parse((await leash('db', 'status', '--json')).stdout) as Record<string, unknown>;
    expect(Object.keys(status).every((k) => /^[a-z_]+$/.test(k))).toBe(true);
    const table = await leash('spend', '--by', 'policy');
    expect(table.stdout).toMatch(/POLICY\s+COST\s+RESERVED\s+REQUESTS\s+DENIED\s+CAP\s+REMAINING/);
    const json = JSON.parse((await leash('spend', '--by', 'policy', '--json')).stdout) as {
      rows: Record<string, unknown>[];
    };
    expect(Object.keys(json.rows[0] ?? {})).toEqual(
      expect.arrayContaining(['cost_micros', 'reserved_micros', 'cap_micros', 'remaining_micros']),
    );
    const query = await leash('audit', 'query', '--json');
    expect(JSON.parse(query.stdout)).toMatchObject([{ cost_micros: 5_000_000, reserved_micros: 0 }]);
    const rows = await leash('audit', 'query', '--wide');
    expect(rows.stdout).toMatch(
      /^TS\s+AGENT\s+RUN_ID\s+TOOL\s+DECISION\s+OUTCOME\s+COST\s+RESERVED\s+VENDOR_OBJECT_ID\s+ID\n/,
    );
    expect(rows.stdout).toMatch(/\$5\.00\s+-/);
  });
});

describe('exit codes', () => {
  it('exits 3 for anything not found, in every command', async () => {
    const missing = join(home, 'missing.yaml');
    const cases: string[][] = [
      ['policies', 'show', 'nope'],
      ['policies', 'show', 'contract', '--version', '99'],
      ['policies', 'diff', 'nope'],
      ['policies', 'diff', 'contract', '--from', '99'],
      ['policies', 'validate', missing],
      ['policies', 'apply', missing],
      ['policies', 'test', missing, '--call', '{"tool":"get_budget"}'],
      ['policies', 'test', policyPath, '--call', '{"tool":"get_budget"}', '--as-key', 'aaaaaaaaaaaa'],
      ['policies', 'replay', missing],
      ['keys', 'create', '--agent', 'x', '--policy', 'nope'],
      ['keys', 'show', 'aaaaaaaaaaaa'],
      ['keys', 'revoke', 'aaaaaaaaaaaa'],
      ['keys', 'revoke', '--run', 'nope'],
      ['keys', 'revoke', '--agent', 'nope'],
      ['keys', 'rotate', 'aaaaaaaaaaaa'],
      ['vendors', 'remove', 'stripe', '--name', 'nope'],
      ['vendors', 'check', 'stripe', '--name', 'nope'],
      ['reconcile', '--settle', randomUUID(), '--outcome', 'failed'],
    ];
    for (const argv of cases) {
      const r = await leash(...argv);
      expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(3);
      expect(r.stderr.trim().split('\n'), argv.join(' ')).toHaveLength(1);
    }
  });

  it('exits 2 for usage errors: an unknown option on every command, and bad values', async () => {
    const groups = JSON.parse((await leash('keys', '--json')).stdout) as { commands: { name: string }[] };
    expect(groups.commands.map((c) => c.name)).toContain('list');
    // Groups of one command take their options directly; the others list their commands with --json.
    const single = ['init', 'serve', 'mcp', 'demo', 'spend', 'reconcile'];
    const commands = single.map((g) => [g]);
    for (const group of ['policies', 'keys', 'vendors', 'audit', 'db']) {
      const listed = JSON.parse((await leash(group, '--json')).stdout) as { commands: { name: string }[] };
      for (const c of listed.commands) commands.push([group, c.name]);
    }
    expect(commands.length).toBeGreaterThan(25);
    for (const argv of commands) {
      const r = await leash(...argv, '--bogus');
      expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain("Unknown option '--bogus'");
    }
    for (const argv of [
      ['policies', 'show'],
      ['policies', 'show', 'contract', '--version', 'two'],
      ['policies', 'test', policyPath],
      ['policies', 'test', policyPath, '--call', 'not json'],
      ['keys', 'create', '--agent', 'x', '--policy', 'contract', '--expires-in', 'soon'],
      ['keys', 'revoke'],
      ['spend', '--by', 'week'],
      ['audit', 'query', '--limit', 'lots'],
      ['reconcile', '--grace', '-1'],
      ['serve', '--port', '99999'],
      ['vendors', 'set', 'paypal', '--from-env', 'X'],
      ['kyes', 'list'],
      ['keys', 'lst'],
    ]) {
      const r = await leash(...argv);
      expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(2);
    }
  });

  it('exits 4 when the database cannot be reached', async () => {
    const r = await cli(['keys', 'list'], { ...env, DATABASE_URL: 'postgres://leash:x@127.0.0.1:1/leash' });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('cannot reach the database');
  });
});

describe('help and typos', () => {
  it('suggests the command meant for a near miss', async () => {
    expect((await leash('keys', 'lst')).stderr).toContain('did you mean `leash keys list`?');
    expect((await leash('kyes')).stderr).toContain('did you mean `leash keys`?');
    expect((await leash('keys', 'list', '--actve')).stderr).toContain('did you mean --active?');
  });

  it('aligns the option column in every command help', async () => {
    for (const argv of [
      ['keys', 'create'],
      ['audit', 'query'],
      ['vendors', 'set'],
      ['policies', 'replay'],
      ['serve'],
    ]) {
      const help = (await leash(...argv, '--help')).stdout;
      const options = help
        .slice(help.indexOf('Options:\n') + 9)
        .trimEnd()
        .split('\n');
      const starts = new Set(
        options
          .map((l) => /^ {2}(-\S.*?\s{2,})\S/.exec(l)?.[1]?.length)
          .filter((n): n is number => n !== undefined),
      );
      // One description column (entries too long for it put their text on the next line, at the same column).
      expect(starts.size, `${argv.join(' ')}:\n${help}`).toBe(1);
    }
  });
});

describe('tables and colour', () => {
  it('fits the terminal width, hiding low-priority columns (and saying so) with ids whole, and prints everything with --wide', async () => {
    await leash(
      'keys',
      'create',
      '--agent',
      'an-agent-with-a-rather-long-name-indeed',
      '--policy',
      'contract',
      '--label',
      'x'.repeat(60),
      '--expires-in',
      '1h',
    );
    const narrow = await cli(['keys', 'list'], { ...env, COLUMNS: '80' });
    const lines = narrow.stdout.trimEnd().split('\n');
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(80);
    expect(narrow.stdout).toContain(keyId);
    expect(lines.at(-1)).toMatch(/columns? hidden.*--wide shows them/);
    expect(narrow.stdout).not.toContain('x'.repeat(20));
    const wide = await cli(['keys', 'list', '--wide'], { ...env, COLUMNS: '80' });
    expect(wide.stdout).toContain('x'.repeat(60));
  });

  it('prints a header on audit tail', async () => {
    const r = await leash('audit', 'tail');
    expect(r.stdout.split('\n')[0]).toMatch(/^TS\s+AGENT\s+RUN_ID\s+TOOL\s+DECISION\s+OUTCOME\s+COST/);
  });

  it('colours only on a TTY, and never with NO_COLOR', async () => {
    const run = async (isTTY: boolean, extra: Record<string, string>) => {
      let out = '';
      await main(['keys', 'list'], {
        stdout: (t) => (out += t),
        stderr: () => undefined,
        env: { ...env, ...extra },
        isTTY,
      });
      return out;
    };
    expect(await run(true, {})).toContain('\u001b[');
    expect(await run(true, { NO_COLOR: '1' })).not.toContain('\u001b[');
    expect(await run(false, {})).not.toContain('\u001b[');
  });
});

describe('policies diff', () => {
  it('diffs structurally: removing a customer from one tool shows its path even when another tool lists it', async () => {
    const v2 = join(home, 'contract-v2.yaml');
    await writeFile(
      v2,
      POLICY.replace(
        'issue_refund: { max_amount_usd: 10, customers: [cus_A, cus_B] }',
        'issue_refund: { max_amount_usd: 10, customers: [cus_A] }',
      ),
    );
    const againstFile = await leash('policies', 'diff', 'contract', '--file', v2);
    expect(againstFile.code).toBe(1);
    expect(againstFile.stdout).toContain('tools.issue_refund.customers: -cus_B');
    expect(againstFile.stdout).not.toContain('get_payment');
    expect((await leash('policies', 'apply', v2)).code).toBe(0);
    const json = await leash('policies', 'diff', 'contract', '--json');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({
      changed: true,
      changes: [{ path: 'tools.issue_refund.customers', op: 'list', removed: ['cus_B'], added: [] }],
    });
    expect((await leash('policies', 'diff', 'contract', '--file', v2)).code).toBe(0);
  });
});

describe('safer defaults, said out loud', () => {
  it('warns about a money tool with no per-call limit and no cap, and about a key that never expires', async () => {
    const loose = join(home, 'loose.yaml');
    await writeFile(loose, 'name: loose\ntools:\n  issue_refund: {}\n');
    const v = await leash('policies', 'validate', loose);
    expect(v.code).toBe(0);
    expect(v.stderr).toContain('tools.issue_refund moves money with no per-call limit');
    expect(JSON.parse((await leash('policies', 'apply', loose, '--json')).stdout)).toMatchObject({
      warnings: [expect.stringContaining('issue_refund')],
    });
    expect((await leash('policies', 'validate', policyPath)).stderr).toBe('');
    const forever = await leash('keys', 'create', '--agent', 'x', '--policy', 'loose');
    expect(forever.stderr).toContain('never expires');
    const meant = await leash('keys', 'create', '--agent', 'x', '--policy', 'loose', '--expires-in', 'never');
    expect(meant.stderr).not.toContain('warning');
  });
});

describe('vendors', () => {
  it('refuses --from-env for a variable that is not set, unless --allow-unset', async () => {
    const r = await leash('vendors', 'set', 'resend', '--from-env', 'NOT_SET_ANYWHERE');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('NOT_SET_ANYWHERE is not set');
    expect(
      (await leash('vendors', 'set', 'resend', '--from-env', 'NOT_SET_ANYWHERE', '--allow-unset')).code,
    ).toBe(0);
  });

  it('says why a credential is not ready', async () => {
    const set = await leash('vendors', 'set', 'resend', '--from-env', 'NOT_SET_ANYWHERE', '--allow-unset');
    expect(set.code, set.stderr).toBe(0);
    const list = JSON.parse((await leash('vendors', 'list', '--json')).stdout) as {
      vendor: string;
      name: string;
      ready: boolean;
      not_ready_reason: string | null;
    }[];
    const resend = list.find((c) => c.vendor === 'resend' && c.name === 'default');
    expect(resend).toMatchObject({
      ready: false,
      not_ready_reason: 'NOT_SET_ANYWHERE not set in this environment',
    });
    expect(list.find((c) => c.vendor === 'stripe')).toMatchObject({ ready: true, not_ready_reason: null });
    expect((await leash('vendors', 'list')).stdout).toMatch(/no: NOT_SET_ANYWHERE not set/);
  });
});
