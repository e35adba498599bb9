// Covers the keyed audit hash: where its key comes from, that replicas sharing it agree (loop guard), that other keys
// disagree, and the start-up warning when there is no key.
import { createHmac, hkdfSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditHasher, UNKEYED_AUDIT_KEY } from '../src/audit/audit-hash.js';
import { ConfigError } from '../src/config/config.js';
import type { DbHandle } from '../src/db/database.js';
import { canonicalJson } from '../src/policy/compile.js';
import { catalogConfig } from './support/config.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { childEnv, runLeash } from './support/cli.js';
import { applyTestPolicy, keyFor, pipelineFor, settledRun, testConfig } from './support/governance.js';
import { startFakeVendor, testCatalog, type FakeVendor } from './fakes/test-tool.js';

const KEY = Buffer.alloc(32, 0x11);
const OTHER = Buffer.alloc(32, 0x22);
const hmac = (key: Buffer | string, text: string) =>
  createHmac('sha256', key).update(text, 'utf8').digest('hex');
const env = (extra: Record<string, string> = {}) => ({
  LEASH_HOME: '/nonexistent/leash-test-home',
  ...extra,
});

describe('auditHasher', () => {
  it('is HMAC-SHA256 under the key, and differs between keys', () => {
    expect(auditHasher(KEY).hash('Your code is 482913')).toBe(hmac(KEY, 'Your code is 482913'));
    expect(auditHasher(KEY).hash('x')).not.toBe(auditHasher(OTHER).hash('x'));
    expect(auditHasher(KEY).keyed).toBe(true);
  });

  it('falls back to the documented public key when there is none', () => {
    const h = auditHasher(undefined);
    expect(h.keyed).toBe(false);
    expect(h.hash('x')).toBe(hmac(UNKEYED_AUDIT_KEY, 'x'));
  });
});

describe('the audit key in config', () => {
  let home: string;
  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'leash-audit-key-'));
  });
  afterAll(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it.each([
    ['hex', KEY.toString('hex')],
    ['base64', KEY.toString('base64')],
  ])('takes LEASH_AUDIT_KEY in %s, ahead of the master key', (_how, text) => {
    const c = catalogConfig(env({ LEASH_AUDIT_KEY: text, LEASH_MASTER_KEY: OTHER.toString('base64') }));
    expect(c.auditKeySource).toBe('LEASH_AUDIT_KEY');
    expect(c.auditKey?.equals(KEY)).toBe(true);
  });

  it('refuses a LEASH_AUDIT_KEY shorter than 32 bytes', () => {
    expect(() => catalogConfig(env({ LEASH_AUDIT_KEY: 'ab'.repeat(16 - 1) }))).toThrow(ConfigError);
    expect(() => catalogConfig(env({ LEASH_AUDIT_KEY: 'ab'.repeat(16 - 1) }))).toThrow(/at least 32 bytes/);
  });

  it('derives a stable key from LEASH_MASTER_KEY with HKDF-SHA256, not the master key itself', () => {
    const e = env({ LEASH_MASTER_KEY: OTHER.toString('base64') });
    const [a, b] = [catalogConfig(e), catalogConfig(e)];
    const expected = Buffer.from(hkdfSync('sha256', OTHER, Buffer.alloc(0), 'leash audit hmac v1', 32));
    expect(a.auditKeySource).toBe('master key');
    expect(a.auditKey?.equals(expected)).toBe(true);
    expect(b.auditKey?.equals(expected)).toBe(true);
    expect(a.auditKey?.equals(OTHER)).toBe(false);
  });

  it('derives the same key from the master.key file on every load', async () => {
    await writeFile(join(home, 'master.key'), KEY.toString('base64') + '\n', { mode: 0o600 });
    const [a, b] = [catalogConfig({ LEASH_HOME: home }), catalogConfig({ LEASH_HOME: home })];
    expect(a.auditKeySource).toBe('master key');
    expect(a.auditKey).toBeDefined();
    expect(a.auditKey?.equals(b.auditKey ?? Buffer.alloc(0))).toBe(true);
    expect(
      a.auditKey?.equals(
        catalogConfig(env({ LEASH_MASTER_KEY: KEY.toString('hex') })).auditKey ?? Buffer.alloc(0),
      ),
    ).toBe(true);
  });

  it('refuses a master key that is there but unusable, rather than hashing unkeyed', () => {
    expect(() => catalogConfig(env({ LEASH_MASTER_KEY: 'too-short' }))).toThrow(ConfigError);
  });

  it('has no key without LEASH_AUDIT_KEY or a master key', () => {
    const c = catalogConfig(env());
    expect(c.auditKey).toBeUndefined();
    expect(c.auditKeySource).toBe('none');
  });
});

describe('args_hash across replicas', () => {
  let tdb: TestDatabase;
  let fake: FakeVendor;
  const pools: DbHandle[] = [];
  const replica = async (key: Buffer) => {
    const pool = await tdb.openPool(4);
    pools.push(pool);
    const config = testConfig({
      TESTVENDOR_TOKEN: 'tok_canary_123456',
      LEASH_AUDIT_KEY: key.toString('hex'),
    });
    return pipelineFor(pool.db, testCatalog(fake), config);
  };
  const args = { amount_cents: 7, customer: 'cus_A' };

  beforeAll(async () => {
    tdb = await freshDatabase();
    fake = await startFakeVendor();
    await applyTestPolicy(tdb.db, testCatalog(fake), {
      name: 'looped',
      limits: { daily_usd: 10 },
      tools: { charge_test: { max_amount_usd: 50, customers: ['cus_A'] } },
      loop_guard: { identical_calls: 2, window: '10m' },
    });
  });
  afterAll(async () => {
    for (const p of pools) await p.close();
    await fake.close();
    await tdb.close();
  });

  const argsHashOf = async (id: string | null) =>
    (
      await tdb.db
        .selectFrom('audit_log')
        .select('args_hash')
        .where('id', '=', id ?? '')
        .executeTakeFirstOrThrow()
    ).args_hash;

  it('is the same keyed digest on two replicas with the same key, so the loop guard counts across them', async () => {
    const [a, b] = [await replica(KEY), await replica(KEY)];
    const key = await keyFor(tdb.db, { policy: 'looped' });
    const first = await settledRun(a, key.key, 'charge_test', args);
    const second = await settledRun(b, key.key, 'charge_test', args);
    if (!first.ok || !second.ok) throw new Error('expected both calls to be allowed');
    const digest = hmac(KEY, `charge_test\0${canonicalJson(args)}`).slice(0, 32);
    expect(await argsHashOf(first.audit_id)).toBe(digest);
    expect(await argsHashOf(second.audit_id)).toBe(digest);
    fake.received.length = 0;
    const third = await settledRun(a, key.key, 'charge_test', args);
    expect(third).toMatchObject({ ok: false, failure: { code: 'loop_detected' } });
    expect(fake.received).toHaveLength(0);
  });

  it('differs under another key (as at upgrade: identical-call counts start again)', async () => {
    const [a, c] = [await replica(KEY), await replica(OTHER)];
    const key = await keyFor(tdb.db, { policy: 'looped' });
    const runs = [
      await settledRun(a, key.key, 'charge_test', args),
      await settledRun(a, key.key, 'charge_test', args),
      await settledRun(c, key.key, 'charge_test', args),
    ];
    if (!runs.every((r) => r.ok))
      throw new Error('expected the call under the other key to be counted apart');
    const other = runs[2];
    const digest = await argsHashOf(other?.ok ? other.audit_id : null);
    expect(digest).toBe(hmac(OTHER, `charge_test\0${canonicalJson(args)}`).slice(0, 32));
    expect(digest).not.toBe(hmac(KEY, `charge_test\0${canonicalJson(args)}`).slice(0, 32));
  });
});

describe('the start-up warning', () => {
  let tdb: TestDatabase;
  let home: string;
  beforeAll(async () => {
    tdb = await freshDatabase();
    home = await mkdtemp(join(tmpdir(), 'leash-audit-warn-'));
  });
  afterAll(async () => {
    await rm(home, { recursive: true, force: true });
    await tdb.close();
  });

  const mcp = (extra: Record<string, string> = {}) =>
    runLeash(
      ['mcp'],
      childEnv({ DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_VAULT_KEY: 'lsk_not_a_real_key', ...extra }),
    );

  it('says once on stderr, with no key, that the hashes can be brute-forced and how to set a key', async () => {
    const r = await mcp();
    const lines = r.stderr.split('\n').filter((l) => l.includes('no audit key'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^warning: .*brute-forced.*LEASH_AUDIT_KEY/);
    expect(r.stdout).toBe('');
  });

  it('says nothing of it with LEASH_AUDIT_KEY set', async () => {
    const r = await mcp({ LEASH_AUDIT_KEY: KEY.toString('hex') });
    expect(r.stderr).not.toContain('no audit key');
  });
});
