// Covers policy versioning, key pinning, revoke by agent/run, rotation and encrypted vendor credentials.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveCredential, setCredential } from '../src/credentials/credentials.js';
import { CredentialError } from '../src/credentials/master-key.js';
import { authenticate } from '../src/keys/authenticate.js';
import { getKey, KeyError, mintKey, revokeKeys, rotateKey } from '../src/keys/vault-keys.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { startFakeVendor, testCatalog, type FakeVendor } from './fakes/test-tool.js';
import { applyTestPolicy, testConfig } from './support/governance.js';

let tdb: TestDatabase;
let fake: FakeVendor;

beforeAll(async () => {
  tdb = await freshDatabase(4);
  fake = await startFakeVendor();
});
afterAll(async () => {
  await fake.close();
  await tdb.close();
});

describe('policies', () => {
  it('creates a new version only when the document changes, and keys follow the latest unless pinned', async () => {
    const catalog = testCatalog(fake);
    const v1 = await applyTestPolicy(tdb.db, catalog, {
      name: 'ver',
      limits: { daily_usd: 5 },
      tools: { charge_test: null },
    });
    const same = await applyTestPolicy(tdb.db, catalog, {
      name: 'ver',
      tools: { charge_test: null },
      limits: { daily_usd: 5 },
    });
    const v2 = await applyTestPolicy(tdb.db, catalog, {
      name: 'ver',
      limits: { daily_usd: 6 },
      tools: { charge_test: null },
    });
    expect([v1.version, v1.created, same.version, same.created, v2.version, v2.created]).toEqual([
      1,
      true,
      1,
      false,
      2,
      true,
    ]);

    const follows = await mintKey(tdb.db, { agent: 'a', policy: 'ver' });
    const pinned = await mintKey(tdb.db, { agent: 'a', policy: 'ver', policyVersion: 1 });
    const f = await authenticate(tdb.db, follows.key);
    const p = await authenticate(tdb.db, pinned.key);
    expect(f.ok && f.key.policy.limits.dailyMicros).toBe(6_000_000);
    expect(p.ok && p.key.policy.limits.dailyMicros).toBe(5_000_000);
    await expect(mintKey(tdb.db, { agent: 'a', policy: 'ver', policyVersion: 3 })).rejects.toThrow(KeyError);
    await expect(mintKey(tdb.db, { agent: 'a', policy: 'nope' })).rejects.toThrow("no policy named 'nope'");
  });
});

describe('vault keys', () => {
  it('stores only a hash, revokes by agent and by run, and rotates to a new secret with the same id', async () => {
    await applyTestPolicy(tdb.db, testCatalog(fake), { name: 'k', tools: { charge_test: null } });
    const a1 = await mintKey(tdb.db, { agent: 'alpha', runId: 'r1', policy: 'k' });
    const a2 = await mintKey(tdb.db, { agent: 'alpha', runId: 'r2', policy: 'k' });
    const b1 = await mintKey(tdb.db, { agent: 'beta', runId: 'r1', policy: 'k' });
    const stored = await tdb.pool.query<{ secret_hash: Buffer }>(
      'select secret_hash from vault_keys where id = $1',
      [a1.id],
    );
    const secret = a1.key.split('_')[2] ?? '';
    expect(stored.rows[0]?.secret_hash.toString('utf8')).not.toContain(secret);
    expect(JSON.stringify(await tdb.pool.query('select * from vault_keys'))).not.toContain(secret);

    expect((await revokeKeys(tdb.db, { runId: 'r1' })).sort()).toEqual([a1.id, b1.id].sort());
    expect(await revokeKeys(tdb.db, { agent: 'alpha' })).toEqual([a2.id]);
    expect((await getKey(tdb.db, a2.id))?.status).toBe('revoked');

    const c = await mintKey(tdb.db, { agent: 'gamma', policy: 'k' });
    const rotated = await rotateKey(tdb.db, c.id);
    expect(rotated.startsWith(`lsk_${c.id}_`)).toBe(true);
    expect((await authenticate(tdb.db, c.key)).ok).toBe(false);
    expect((await authenticate(tdb.db, rotated)).ok).toBe(true);
  });
});

describe('vendor credentials', () => {
  const masterKey = Buffer.alloc(32, 7).toString('base64');
  const fields = { token: 'TESTVENDOR_TOKEN' };

  it('stores a secret encrypted (AES-256-GCM) and decrypts it only with the master key', async () => {
    const config = testConfig({ LEASH_MASTER_KEY: masterKey });
    await setCredential(tdb.db, config, {
      vendor: 'testvendor',
      name: 'eu',
      secret: { token: 'canary_secret_eu_998877' },
      baseUrl: 'http://127.0.0.1:9',
      account: 'acct_9',
    });
    const raw = await tdb.pool.query<{ ciphertext: Buffer }>(
      `select ciphertext from vendor_credentials where name = 'eu'`,
    );
    expect(raw.rows[0]?.ciphertext.toString('latin1')).not.toContain('canary_secret_eu_998877');
    const c = await resolveCredential(tdb.db, config, 'testvendor', 'eu', fields);
    expect(c).toMatchObject({
      secret: { token: 'canary_secret_eu_998877' },
      baseUrl: 'http://127.0.0.1:9',
      account: 'acct_9',
    });
    const wrong = testConfig({ LEASH_MASTER_KEY: Buffer.alloc(32, 8).toString('base64') });
    await expect(resolveCredential(tdb.db, wrong, 'testvendor', 'eu', fields)).rejects.toThrow(
      CredentialError,
    );
  });

  it('reads the default credential from the vendor env var, and says which var is missing', async () => {
    const c = await resolveCredential(
      tdb.db,
      testConfig({ TESTVENDOR_TOKEN: 'from_env' }),
      'testvendor',
      'default',
      fields,
    );
    expect(c.secret).toEqual({ token: 'from_env' });
    await expect(resolveCredential(tdb.db, testConfig(), 'testvendor', 'default', fields)).rejects.toThrow(
      'TESTVENDOR_TOKEN',
    );
    await expect(resolveCredential(tdb.db, testConfig(), 'testvendor', 'nope', fields)).rejects.toThrow(
      "no credential named 'nope'",
    );
  });
});
