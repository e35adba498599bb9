// Covers vendor credentials: each field's shape checked when set and when read from env at start (refused naming
// the field, nothing stored, no secret echoed), a full Stripe secret key warned about, and a changed credential
// used by the next call of every replica (two runtimes on one database), even across a lost listening connection.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRuntime, type Runtime } from '../src/cli/runtime.js';
import { SESSION_NAME } from '../src/credentials/credential-changes.js';
import { secretForms } from '../src/credentials/credentials.js';
import { VendorClients } from '../src/pipeline/clients.js';
import { runTool } from '../src/pipeline/run-tool.js';
import type { VendorSpec } from '../src/pipeline/vendor-spec.js';
import { catalog } from '../tools/index.js';
import { startTwilioFake, type TwilioFake } from '../tools/twilio/sandbox.js';
import { catalogConfig } from './support/config.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor } from './support/governance.js';
import { cli, type CliResult } from './support/run-cli.js';

const hex32 = (pair: string) => pair.repeat(16);
const GOOD = {
  sid: `AC${hex32('a1')}`,
  token: hex32('5e'),
  stripe: 'rk_test_canaryRestricted112233',
  resend: 're_canaryGood_445566',
};
/** Wrong shapes, each a canary: no form of it may be printed or stored. */
const BAD = {
  sid: `AC${'canarysidq'.repeat(3)}xyz`, // 35 characters, not hex: the reported case
  token: 'canaryTokenNotHex_0123456789abcd',
  apiKeySid: `SK${hex32('9f')}`,
  stripe: 'pk_test_canaryPublishable778899',
  stripeTypo: 'sk_tset_canaryTypo556677',
  resend: 'rs_canaryWrongPrefix_8899',
};
const FULL_STRIPE = 'sk_test_canaryFullSecret001122';

let tdb: TestDatabase;
let home: string;
let env: Record<string, string>;
const leash = (argv: string[], stdin?: string, extra: Record<string, string> = {}) =>
  cli(argv, { ...env, ...extra }, stdin);

function expectNotEchoed(r: CliResult, secret: string) {
  for (const form of secretForms([secret])) {
    expect(r.stdout).not.toContain(form);
    expect(r.stderr).not.toContain(form);
  }
}

async function stored(vendor: string, name: string): Promise<number> {
  const r = await tdb.pool.query('select 1 from vendor_credentials where vendor = $1 and name = $2', [
    vendor,
    name,
  ]);
  return r.rowCount ?? 0;
}

beforeAll(async () => {
  tdb = await freshDatabase(4);
  home = await mkdtemp(join(tmpdir(), 'leash-vcred-'));
  env = { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' };
  const init = await leash(['init']);
  expect(init.code, init.stderr).toBe(0);
});

afterAll(async () => {
  await tdb?.close();
  await rm(home, { recursive: true, force: true });
});

describe('leash vendors set checks the shape of each secret field', () => {
  it.each([
    [
      'a 35-character non-hex Twilio account SID',
      'twilio',
      `account_sid=${BAD.sid}\nauth_token=${GOOD.token}\n`,
      BAD.sid,
      /account_sid.*"AC" followed by 32 hex digits.*35 characters/,
    ],
    [
      'a Twilio auth token that is not 32 hex digits',
      'twilio',
      `account_sid=${GOOD.sid}\nauth_token=${BAD.token}\n`,
      BAD.token,
      /auth_token.*32 hex digits/,
    ],
    [
      'a Twilio API key SID given as the account SID',
      'twilio',
      `account_sid=${BAD.apiKeySid}\nauth_token=${GOOD.token}\n`,
      BAD.apiKeySid,
      /account_sid.*API key SID \(SK…\)/,
    ],
    ['a Stripe publishable key', 'stripe', BAD.stripe, BAD.stripe, /secret_key.*rk_live_.*publishable key/],
    ['a Stripe key with a mistyped mode', 'stripe', BAD.stripeTypo, BAD.stripeTypo, /secret_key.*sk_test_/],
    ['a Resend key without re_', 'resend', BAD.resend, BAD.resend, /api_key.*"re_"/],
  ])(
    'refuses %s, naming the field, storing nothing and echoing no secret',
    async (_c, vendor, stdin, secret, says) => {
      const r = await leash(['vendors', 'set', vendor, '--name', 'shaped', '--secret-stdin'], stdin);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(says);
      expect(r.stdout).toBe('');
      expect(await stored(vendor, 'shaped')).toBe(0);
      expectNotEchoed(r, secret);
    },
  );

  it('refuses a --from-env variable whose value has the wrong shape, naming the variable', async () => {
    const r = await leash(
      [
        'vendors',
        'set',
        'twilio',
        '--name',
        'from-env',
        '--from-env',
        'account_sid=MY_SID',
        '--from-env',
        'auth_token=MY_TOKEN',
      ],
      undefined,
      { MY_SID: BAD.sid, MY_TOKEN: GOOD.token },
    );
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/account_sid \(MY_SID\).*"AC" followed by 32 hex digits/);
    expect(await stored('twilio', 'from-env')).toBe(0);
    expectNotEchoed(r, BAD.sid);
  });

  it('stores well-formed credentials, warning (not failing) on a full Stripe secret key only', async () => {
    const full = await leash(['vendors', 'set', 'stripe', '--name', 'full', '--secret-stdin'], FULL_STRIPE);
    expect(full.code, full.stderr).toBe(0);
    expect(full.stderr).toMatch(/full secret key \(sk_…\).*restricted key \(rk_…\)/);
    expectNotEchoed(full, FULL_STRIPE);
    const restricted = await leash(
      ['vendors', 'set', 'stripe', '--name', 'rk', '--secret-stdin'],
      GOOD.stripe,
    );
    expect(restricted.code, restricted.stderr).toBe(0);
    expect(restricted.stderr).toBe('');
    const twilio = await leash(
      ['vendors', 'set', 'twilio', '--name', 'ok', '--secret-stdin'],
      `account_sid=${GOOD.sid}\nauth_token=${GOOD.token}\n`,
    );
    expect(twilio.code, twilio.stderr).toBe(0);
    const resend = await leash(['vendors', 'set', 'resend', '--name', 'ok', '--secret-stdin'], GOOD.resend);
    expect(resend.code, resend.stderr).toBe(0);
    for (const [vendor, name] of [
      ['stripe', 'full'],
      ['stripe', 'rk'],
      ['twilio', 'ok'],
      ['resend', 'ok'],
    ] as const)
      expect(await stored(vendor, name)).toBe(1);
  });

  it('refuses a malformed vendor secret in the environment at start with a readable config error', async () => {
    const r = await leash(['vendors', 'list'], undefined, {
      TWILIO_ACCOUNT_SID: BAD.sid,
      TWILIO_AUTH_TOKEN: GOOD.token,
      RESEND_API_KEY: BAD.resend,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid configuration in environment');
    expect(r.stderr).toMatch(/TWILIO_ACCOUNT_SID.*"AC" followed by 32 hex digits/);
    expect(r.stderr).toMatch(/RESEND_API_KEY.*"re_"/);
    expectNotEchoed(r, BAD.sid);
    expectNotEchoed(r, BAD.resend);
    expect(() => catalogConfig({ LEASH_HOME: home, STRIPE_SECRET_KEY: BAD.stripe })).toThrow(
      /STRIPE_SECRET_KEY/,
    );
  });
});

describe('a changed credential reaches every replica on its next call', () => {
  let fake: TwilioFake;
  let replicas: Runtime[] = [];
  let vaultKey: string;
  const credential = (n: number) => ({ sid: `AC${hex32('c1')}`, token: hex32(`${n}${n}`) });
  const basic = (c: { sid: string; token: string }) =>
    `Basic ${Buffer.from(`${c.sid}:${c.token}`).toString('base64')}`;
  const setTwilio = async (c: { sid: string; token: string }) => {
    const r = await leash(
      ['vendors', 'set', 'twilio', '--secret-stdin'],
      `account_sid=${c.sid}\nauth_token=${c.token}\n`,
    );
    expect(r.code, r.stderr).toBe(0);
  };
  /** Sends one SMS through a replica and returns the Authorization header the fake received for it. */
  async function sentWith(r: Runtime): Promise<string | undefined> {
    fake.received.length = 0;
    const result = await runTool(r.deps, vaultKey, 'send_sms', { to: '+15550002222', body: 'hi' });
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect(fake.received).toHaveLength(1);
    return fake.received[0]?.headers.authorization;
  }
  /** Resolves when each replica has heard of a credential change (or lost the connection it hears them on). */
  const heard = () =>
    Promise.all(replicas.map((r) => new Promise<void>((resolve) => r.credentialChanges.onChange(resolve))));

  beforeAll(async () => {
    fake = await startTwilioFake();
    await setTwilio(credential(1));
    await applyTestPolicy(tdb.db, catalog, {
      name: 'sms',
      tools: { send_sms: { from: '+15550001111', to_prefixes: ['+1'], max_segments: 3 } },
    });
    vaultKey = (await keyFor(tdb.db, { policy: 'sms' })).key;
    const config = catalogConfig({ ...env, LEASH_TWILIO_BASE_URL: fake.url });
    replicas = [
      await openRuntime(config, { sandbox: false, poolMax: 2 }),
      await openRuntime(config, { sandbox: false, poolMax: 2 }),
    ];
    await Promise.all(replicas.map((r) => r.credentialChanges.ready));
  });

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.close()));
    await fake?.close();
  });

  it('uses the new credential on each replica as soon as it hears of the change', async () => {
    // Starts from credential 1 whatever another test of this block set last.
    const reset = heard();
    await setTwilio(credential(1));
    await reset;
    for (const r of replicas) expect(await sentWith(r)).toBe(basic(credential(1)));
    // Cached now: a second call reuses the client.
    for (const r of replicas) expect(await sentWith(r)).toBe(basic(credential(1)));
    const changed = heard();
    await setTwilio(credential(2));
    await changed;
    for (const r of replicas) expect(await sentWith(r)).toBe(basic(credential(2)));
  });

  it('caches nothing while a replica cannot hear changes, and hears them again once reconnected', async () => {
    const lost = heard();
    // Ends every session that is listening (each replica's), as a network blip or a database restart would.
    const ended = await tdb.pool.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
        where datname = current_database() and application_name = $1`,
      [SESSION_NAME],
    );
    expect(ended.rowCount).toBe(2);
    await lost;
    await setTwilio(credential(3));
    for (const r of replicas) expect(await sentWith(r)).toBe(basic(credential(3)));
    await Promise.all(replicas.map((r) => r.credentialChanges.ready));
    for (const r of replicas) expect(await sentWith(r)).toBe(basic(credential(3)));
    const changed = heard();
    await setTwilio(credential(4));
    await changed;
    for (const r of replicas) expect(await sentWith(r)).toBe(basic(credential(4)));
  });
});

describe('vendor clients kept per credential change', () => {
  /** A feed the test moves by hand, and a vendor whose sandbox read waits for `release`. */
  function setup() {
    const feed = {
      live: true,
      generation: 0,
      ready: Promise.resolve(),
      onChange: () => () => true,
      close: async () => {},
    };
    let built = 0;
    let release: () => void = () => undefined;
    let gate: Promise<void> = Promise.resolve();
    const spec: VendorSpec<{ n: number }> = {
      name: 'fakevendor',
      env: { baseUrl: 'LEASH_FAKEVENDOR_BASE_URL', secrets: {} },
      createClient: () => ({ n: ++built }),
      sandbox: async () => {
        await gate;
        return { baseUrl: 'http://127.0.0.1:9', secret: {} };
      },
    };
    const hold = () => {
      gate = new Promise((resolve) => (release = resolve));
    };
    const clients = new VendorClients(tdb.db, catalogConfig({ LEASH_HOME: home }), true, 1_000, feed);
    // VendorClients hands out clients as unknown; this spec's are { n }.
    const get = async () => ((await clients.get(spec, 'default', undefined)).client as { n: number }).n;
    return { feed, get, hold, release: () => release() };
  }

  it('reuses a client until a change is heard, and never keeps one read while a change arrived', async () => {
    const { feed, get, hold, release } = setup();
    expect([await get(), await get()]).toEqual([1, 1]);
    feed.generation++;
    expect([await get(), await get()]).toEqual([2, 2]);
    feed.generation++;
    hold();
    const inFlight = get();
    feed.generation++; // heard while the credential was being read: that read may be the old one
    release();
    expect(await inFlight).toBe(3);
    expect([await get(), await get()]).toEqual([4, 4]);
  });

  it('keeps nothing while changes are not heard', async () => {
    const { feed, get } = setup();
    feed.live = false;
    expect([await get(), await get()]).toEqual([1, 2]);
    feed.live = true;
    feed.generation++;
    expect([await get(), await get()]).toEqual([3, 3]);
  });
});
