// Covers `leash vendors check`: one harmless read per vendor against its fake (real SDKs over real HTTP), a wrong
// key reported as a rejected credential with exit 1, and no form of any secret in what the CLI prints.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { secretForms } from '../src/credentials/credentials.js';
import { VendorError } from '../src/pipeline/errors.js';
import type { VendorSpec } from '../src/pipeline/vendor-spec.js';
import { resendVendor } from '../tools/resend/client.js';
import { startResendFake, type ResendFake } from '../tools/resend/sandbox.js';
import { CHECK_PAYMENT_INTENT, stripeVendor } from '../tools/stripe/client.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { twilioVendor } from '../tools/twilio/client.js';
import { startTwilioFake, type TwilioFake } from '../tools/twilio/sandbox.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { cli, type CliResult } from './support/run-cli.js';
import { CANARIES } from './support/vendors.js';

const WRONG = {
  stripe: 'sk_test_wrongKey_7h6g5f4e3d2c1b',
  twilio: `account_sid=${CANARIES.TWILIO_ACCOUNT_SID}\nauth_token=${'0bad'.repeat(8)}\n`,
  twilioToken: '0bad'.repeat(8),
  resend: 're_wrongKey_a9s8d7f6g5h4',
};

let tdb: TestDatabase;
let home: string;
let env: Record<string, string>;
let stripe: StripeFake;
let twilio: TwilioFake;
let resend: ResendFake;
const leash = (argv: string[], stdin?: string) => cli(argv, env, stdin);

/** Every secret (right and wrong) in every form the scrubber knows: none may be printed. */
const SECRETS = secretForms([...Object.values(CANARIES), WRONG.stripe, WRONG.twilioToken, WRONG.resend]);
function expectNoSecret(r: CliResult) {
  for (const form of SECRETS) {
    expect(r.stdout).not.toContain(form);
    expect(r.stderr).not.toContain(form);
  }
}

beforeAll(async () => {
  tdb = await freshDatabase(2);
  home = await mkdtemp(join(tmpdir(), 'leash-vcheck-'));
  // Each fake knows its one real credential and answers any other as the vendor does.
  [stripe, twilio, resend] = await Promise.all([
    startStripeFake(false, { secretKey: CANARIES.STRIPE_SECRET_KEY }),
    startTwilioFake({ authToken: CANARIES.TWILIO_AUTH_TOKEN }),
    startResendFake({ apiKey: CANARIES.RESEND_API_KEY }),
  ]);
  env = {
    DATABASE_URL: tdb.url,
    LEASH_HOME: home,
    LEASH_LOG: 'silent',
    ...CANARIES,
    LEASH_STRIPE_BASE_URL: stripe.url,
    LEASH_TWILIO_BASE_URL: twilio.url,
    LEASH_RESEND_BASE_URL: resend.url,
  };
  const stored = [
    await leash(['vendors', 'set', 'stripe', '--name', 'wrong', '--secret-stdin'], WRONG.stripe),
    await leash(['vendors', 'set', 'twilio', '--name', 'wrong', '--secret-stdin'], WRONG.twilio),
    await leash(['vendors', 'set', 'resend', '--name', 'wrong', '--secret-stdin'], WRONG.resend),
  ];
  for (const r of stored) expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await Promise.all([stripe.close(), twilio.close(), resend.close()]);
  await tdb.close();
  await rm(home, { recursive: true, force: true });
});

beforeEach(() => {
  stripe.received.length = 0;
  twilio.received.length = 0;
  resend.received.length = 0;
});

describe('leash vendors check', () => {
  it('proves each configured credential with one read, and prints no secret', async () => {
    const s = await leash(['vendors', 'check', 'stripe']);
    expect(s.code, s.stdout + s.stderr).toBe(0);
    expect(s.stdout).toMatch(/^stripe\/default: works \(authenticated, \d+ ms\)/);
    expect(stripe.received.map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET /v1/payment_intents/${CHECK_PAYMENT_INTENT}`,
    ]);

    const t = await leash(['vendors', 'check', 'twilio']);
    expect(t.code, t.stdout + t.stderr).toBe(0);
    expect(t.stdout).toContain("twilio/default: works (authenticated: 'leash fake account' (active, Full)");
    expect(twilio.received.map((r) => `${r.method} ${r.path}`)).toEqual([
      `GET /2010-04-01/Accounts/${CANARIES.TWILIO_ACCOUNT_SID}.json`,
    ]);

    const r = await leash(['vendors', 'check', 'resend', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      vendor: 'resend',
      name: 'default',
      ok: true,
      kind: null,
      detail: 'authenticated (full access)',
    });
    expect(resend.received.map((q) => `${q.method} ${q.path}`)).toEqual(['GET /emails']);

    // Reads only: nothing was written at any vendor.
    expect(stripe.refunds.size + resend.sent.length).toBe(0);
    for (const out of [s, t, r]) expectNoSecret(out);
  });

  it('fails with exit 1 and "credential rejected" for a wrong key, printing no secret', async () => {
    for (const vendor of ['stripe', 'twilio', 'resend']) {
      const out = await leash(['vendors', 'check', vendor, '--name', 'wrong']);
      expect(out.code, `${vendor}: ${out.stdout}${out.stderr}`).toBe(1);
      expect(out.stdout).toMatch(
        new RegExp(`^${vendor}/wrong: FAILED \\(credential rejected \\(HTTP 40[13]\\): `),
      );
      expectNoSecret(out);
      const json = await leash(['vendors', 'check', vendor, '--name', 'wrong', '--json']);
      expect(json.code).toBe(1);
      expect(JSON.parse(json.stdout)).toMatchObject({ vendor, name: 'wrong', ok: false, kind: 'auth' });
      expectNoSecret(json);
    }
  });

  it('counts a sending-only Resend key as working, with the caveat', async () => {
    resend.failNext(401, {
      name: 'restricted_api_key',
      message: 'This API key is restricted to only send emails',
    });
    const out = await leash(['vendors', 'check', 'resend']);
    expect(out.code, out.stdout + out.stderr).toBe(0);
    expect(out.stdout).toContain('sending-only key');
  });

  it('reports an unreachable vendor as unavailable, and an unknown credential as not found', async () => {
    stripe.failNext(503, { type: 'api_error', message: 'Stripe is down' });
    const failed = await leash(['vendors', 'check', 'stripe']);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toContain('FAILED (unavailable (HTTP 503)');
    expect((await leash(['vendors', 'check', 'stripe', '--name', 'nope'])).code).toBe(3);
  });
});

describe('vendor checks against the --sandbox fakes', () => {
  const vendors: VendorSpec[] = [stripeVendor, twilioVendor, resendVendor];
  it.each(vendors.map((v) => [v.name, v] as const))('%s: the sandbox answers the check', async (_n, spec) => {
    const fake = await spec.sandbox();
    const credential = { vendor: spec.name, name: 'default', secret: fake.secret, baseUrl: fake.baseUrl };
    const client = await spec.createClient(credential, { timeoutMs: 30_000 });
    expect(await spec.check?.(client)).toMatch(/^authenticated/);
    // A wrong value of any secret field is refused as the real vendor refuses it.
    for (const field of Object.keys(fake.secret)) {
      if (field === 'account_sid') continue; // a different SID is a different account, checked by path
      const wrong = { ...credential, secret: { ...fake.secret, [field]: `${fake.secret[field] ?? ''}x` } };
      const bad = await spec.createClient(wrong, { timeoutMs: 30_000 });
      const error = await spec.check?.(bad).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(VendorError);
      expect((error as VendorError).kind).toBe('auth');
    }
  });
});
