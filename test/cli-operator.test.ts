// Covers the operator CLI in-process: init, policies, keys, vendors — output, exit codes, and no secrets printed.
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { cli } from './support/run-cli.js';

let tdb: TestDatabase;
let home: string;
let env: Record<string, string>;
const CANARY = {
  stripe: 'sk_test_cliCanary_55aa66bb77cc',
  twilioToken: 'c11ca4a7'.repeat(4),
  resend: 're_cliCanary_zzyyxxwwvv',
};

beforeAll(async () => {
  tdb = await freshDatabase(2);
  home = await mkdtemp(join(tmpdir(), 'leash-cli-'));
  env = { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent', STRIPE_SECRET_KEY: CANARY.stripe };
});

afterAll(async () => {
  await tdb.close();
  await rm(home, { recursive: true, force: true });
});

const policyFile = async (name: string, body: string) => {
  const path = join(home, name);
  await writeFile(path, body);
  return path;
};

describe('leash init', () => {
  it('creates LEASH_HOME (0700) and a 0600 master key, and is idempotent', async () => {
    const first = await cli(['init', '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    expect((await stat(home)).mode & 0o777).toBe(0o700);
    expect((await stat(join(home, 'master.key'))).mode & 0o777).toBe(0o600);
    const second = await cli(['init'], env);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('migrated');
  });
});

describe('leash policies', () => {
  it('validates, applies, versions, lists, shows and diffs a policy file', async () => {
    const v1 = await policyFile(
      'p1.yaml',
      'name: ops\nlimits: { daily_usd: 20 }\ntools:\n  issue_refund: { max_amount_usd: 10 }\n',
    );
    expect((await cli(['policies', 'validate', v1], env)).stdout).toContain("valid policy 'ops'");
    expect((await cli(['policies', 'apply', v1], env)).stdout).toContain('version 1');
    expect((await cli(['policies', 'apply', v1], env)).stdout).toContain('unchanged (version 1)');
    const v2 = await policyFile(
      'p2.yaml',
      'name: ops\nlimits: { daily_usd: 25 }\ntools:\n  issue_refund: { max_amount_usd: 10 }\n',
    );
    expect(JSON.parse((await cli(['policies', 'apply', v2, '--json'], env)).stdout)).toMatchObject({
      version: 2,
      created: true,
    });
    const list = await cli(['policies', 'list'], env);
    expect(list.stdout).toMatch(/ops\s+2\s+-\s+issue_refund/);
    expect((await cli(['policies', 'show', 'ops', '--version', '1'], env)).stdout).toContain('daily_usd: 20');
    const diff = await cli(['policies', 'diff', 'ops'], env);
    expect(diff.stdout).toContain('limits.daily_usd: 20 → 25');
    expect(diff.code).toBe(1);
    const same = await cli(['policies', 'diff', 'ops', '--file', v2], env);
    expect([same.code, same.stdout.trim().split('\n').at(-1)]).toEqual([0, '(no changes)']);
  });

  it('rejects a bad policy with the path and what was expected, exit 1, and stores nothing', async () => {
    const bad = await policyFile(
      'bad.yaml',
      'name: broken\ntools:\n  send_sms: { to_prefixes: ["1"], colour: red }\n',
    );
    const r = await cli(['policies', 'apply', bad], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('tools.send_sms');
    expect(r.stderr).toContain('colour');
    expect((await cli(['policies', 'show', 'broken'], env)).code).toBe(3);
  });
});

describe('leash keys', () => {
  // A policy of their own, so these tests need none of the ones above to have run first.
  beforeAll(async () => {
    const file = await policyFile(
      'bots.yaml',
      'name: bots\ntools:\n  issue_refund: { max_amount_usd: 10 }\n',
    );
    const applied = await cli(['policies', 'apply', file], env);
    expect(applied.code, applied.stderr).toBe(0);
  });

  it('creates a key shown once, lists and shows it without the secret, rotates and revokes it', async () => {
    const created = await cli(
      [
        'keys',
        'create',
        '--agent',
        'bot',
        '--run',
        'r-1',
        '--policy',
        'bots',
        '--expires-in',
        '30m',
        '--label',
        'test',
        '--meta',
        'ticket=42',
        '--json',
      ],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    const k = JSON.parse(created.stdout) as {
      id: string;
      key: string;
      agent: string;
      run_id: string;
      policy: string;
      expires_at: string;
    };
    expect(k).toMatchObject({ agent: 'bot', run_id: 'r-1', policy: 'bots' });
    expect(new Date(k.expires_at).getTime()).toBeGreaterThan(Date.now() + 29 * 60_000);
    const secret = k.key.slice(18);
    const list = await cli(['keys', 'list', '--agent', 'bot'], env);
    const show = await cli(['keys', 'show', k.id, '--json'], env);
    expect(list.stdout).toContain(k.id);
    expect(JSON.parse(show.stdout)).toMatchObject({ id: k.id, metadata: { ticket: '42' }, status: 'active' });
    expect(list.stdout + show.stdout).not.toContain(secret);

    const rotated = await cli(['keys', 'rotate', k.id], env);
    expect(rotated.stdout.trim()).toMatch(new RegExp(`^lsk_${k.id}_`));
    const revoked = await cli(['keys', 'revoke', '--run', 'r-1'], env);
    expect(revoked.stdout).toContain(`revoked 1 key: ${k.id}`);
    expect((await cli(['keys', 'list', '--agent', 'bot', '--active', '--json'], env)).stdout.trim()).toBe(
      '[]',
    );
  });

  it('gives usage errors (exit 2) and not-found (exit 3) with one-line reasons', async () => {
    const missing = await cli(['keys', 'create', '--agent', 'x'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--agent and --policy are required');
    const badDur = await cli(
      ['keys', 'create', '--agent', 'x', '--policy', 'bots', '--expires-in', 'soon'],
      env,
    );
    expect(badDur.code).toBe(2);
    expect(badDur.stderr).toContain('--expires-in');
    const nopolicy = await cli(['keys', 'create', '--agent', 'x', '--policy', 'ghost'], env);
    expect(nopolicy.code).toBe(3);
    expect(nopolicy.stderr).toContain("no policy named 'ghost'");
    expect((await cli(['keys', 'show', 'aaaaaaaaaaaa'], env)).code).toBe(3);
    expect((await cli(['keys', 'revoke', 'aaaaaaaaaaaa'], env)).code).toBe(3);
    const both = await cli(['keys', 'revoke', 'aaaaaaaaaaaa', '--agent', 'x'], env);
    expect(both.code).toBe(2);
    expect((await cli(['keys', 'create', '--bogus'], env)).stderr).toContain("Unknown option '--bogus'");
  });

  it('answers --help for every command group', async () => {
    for (const group of ['init', 'serve', 'mcp', 'demo', 'policies', 'keys', 'vendors', 'reconcile', 'db']) {
      const r = await cli([group, '--help'], env);
      expect(r.code, group).toBe(0);
      expect(r.stdout).toContain(`leash ${group}`);
    }
    expect((await cli(['keys', 'create', '--help'], env)).stdout).toContain('--expires-in');
  });
});

describe('leash vendors', () => {
  it('stores secrets encrypted from stdin or as env references, and never prints them', async () => {
    const s = await cli(['vendors', 'set', 'resend', '--secret-stdin'], env, CANARY.resend + '\n');
    expect(s.code, s.stderr).toBe(0);
    const t = await cli(
      ['vendors', 'set', 'twilio', '--name', 'eu', '--secret-stdin', '--base-url', 'http://127.0.0.1:9'],
      env,
      `account_sid=AC${'1'.repeat(32)}\nauth_token=${CANARY.twilioToken}\n`,
    );
    expect(t.code, t.stderr).toBe(0);
    const e = await cli(
      ['vendors', 'set', 'stripe', '--from-env', 'STRIPE_SECRET_KEY', '--account', 'acct_1'],
      env,
    );
    expect(e.code, e.stderr).toBe(0);
    const list = await cli(['vendors', 'list'], env);
    const json = await cli(['vendors', 'list', '--json'], env);
    expect(list.stdout).toMatch(/resend\s+default\s+encrypted/);
    expect(list.stdout).toMatch(/twilio\s+eu\s+encrypted/);
    expect(list.stdout).toMatch(/stripe\s+default\s+env\s+STRIPE_SECRET_KEY/);
    const stored = await tdb.pool.query('select * from vendor_credentials');
    const everything =
      list.stdout + list.stderr + json.stdout + s.stdout + t.stdout + e.stdout + JSON.stringify(stored.rows);
    for (const c of Object.values(CANARY)) expect(everything).not.toContain(c);
  });

  it('refuses a secret on argv-free paths with clear errors, printing no secret', async () => {
    const neither = await cli(['vendors', 'set', 'stripe'], env);
    expect(neither.code).toBe(2);
    const partial = await cli(
      ['vendors', 'set', 'twilio', '--secret-stdin'],
      env,
      `auth_token=${CANARY.twilioToken}\n`,
    );
    expect(partial.code).toBe(2);
    expect(partial.stderr).toContain('missing: account_sid');
    expect(partial.stderr).not.toContain(CANARY.twilioToken);
    expect((await cli(['vendors', 'set', 'paypal', '--from-env', 'X'], env)).stderr).toContain(
      "unknown vendor 'paypal'",
    );
    expect((await cli(['vendors', 'remove', 'stripe', '--name', 'nope'], env)).code).toBe(3);
  });
});
