// Covers scrubbing what vendors say: fakes that echo the credential (plain, base64, `sid:token` base64, URL-encoded)
// in their error message, request id header and error code; none of it may reach the tool result, the audit row or the logs.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { secretForms } from '../src/credentials/credentials.js';
import { scrub } from '../src/pipeline/errors.js';
import type { PipelineDeps } from '../src/pipeline/run-tool.js';
import type { Catalog, VendorSpec } from '../src/pipeline/tool.js';
import { resendVendor } from '../tools/resend/client.js';
import { sendEmail } from '../tools/resend/send-email.js';
import { stripeVendor } from '../tools/stripe/client.js';
import { issueRefund } from '../tools/stripe/issue-refund.js';
import { twilioVendor } from '../tools/twilio/client.js';
import { sendSms } from '../tools/twilio/send-sms.js';
import { sendJson, startRecordingServer, type RecordingServer } from '../src/vendor-kit/fake-server.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, pipelineFor, testConfig, settledRun } from './support/governance.js';
import { CANARIES } from './support/vendors.js';

const SID = CANARIES.TWILIO_ACCOUNT_SID;
const TOKEN = CANARIES.TWILIO_AUTH_TOKEN;
const STRIPE = CANARIES.STRIPE_SECRET_KEY;
const RESEND = CANARIES.RESEND_API_KEY;
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Every echoed form the vendors below send back, by vendor. */
const ECHOES = {
  twilio: {
    'the token': TOKEN,
    'the token in base64': b64(TOKEN),
    'sid:token': `${SID}:${TOKEN}`,
    'sid:token in base64': b64(`${SID}:${TOKEN}`),
    'sid:token in URL-safe base64': Buffer.from(`${SID}:${TOKEN}`).toString('base64url'),
  },
  stripe: {
    'the key': STRIPE,
    'the key in base64': b64(STRIPE),
    'key: (basic auth) in base64': b64(`${STRIPE}:`),
  },
  resend: {
    'the key': RESEND,
    'the key in base64': b64(RESEND),
    'Bearer key in base64': b64(`Bearer ${RESEND}`),
  },
} as const;
const ALL_FORMS = Object.values(ECHOES).flatMap((v) => Object.values(v));

const catalog: Catalog = {
  tools: new Map([
    ['send_sms', sendSms],
    ['issue_refund', issueRefund],
    ['send_email', sendEmail],
  ]),
  vendors: new Map<string, VendorSpec>([
    ['twilio', twilioVendor],
    ['stripe', stripeVendor],
    ['resend', resendVendor],
  ]),
};

let tdb: TestDatabase;
let deps: PipelineDeps;
let twilio: RecordingServer;
let stripe: RecordingServer;
let resend: RecordingServer;
/** What the fakes echo on their next error. */
let echo = '';
const logs: string[] = [];

const CHARGE = {
  id: 'ch_canary1',
  object: 'charge',
  amount: 1000,
  amount_captured: 1000,
  amount_refunded: 0,
  captured: true,
  currency: 'usd',
  customer: 'cus_A',
  payment_intent: null,
  refunded: false,
  status: 'succeeded',
};

beforeAll(async () => {
  tdb = await freshDatabase();
  twilio = await startRecordingServer((_req, res) =>
    sendJson(
      res,
      400,
      { code: echo, message: `Invalid credential ${echo} (echo)`, more_info: echo, status: 400 },
      { 'twilio-request-id': `RQ${echo}` },
    ),
  );
  stripe = await startRecordingServer((req, res) => {
    if (req.method === 'GET') return sendJson(res, 200, CHARGE, { 'request-id': 'req_lookup1' });
    sendJson(
      res,
      400,
      { error: { type: 'invalid_request_error', code: echo, message: `No such key: ${echo}`, param: echo } },
      { 'request-id': `req_${echo}` },
    );
  });
  resend = await startRecordingServer((_req, res) =>
    sendJson(res, 400, { statusCode: 400, name: echo, message: `key ${echo} is not valid here` }),
  );
  const config = testConfig({
    ...CANARIES,
    LEASH_TWILIO_BASE_URL: twilio.url,
    LEASH_STRIPE_BASE_URL: stripe.url,
    LEASH_RESEND_BASE_URL: resend.url,
  });
  deps = pipelineFor(tdb.db, catalog, config, logs);
  await applyTestPolicy(tdb.db, catalog, {
    name: 'echo',
    limits: { daily_usd: 100 },
    tools: {
      send_sms: { from: '+15550001111', to_prefixes: ['+1'] },
      issue_refund: { max_amount_usd: 50, customers: ['cus_A'] },
      send_email: { from: 'Support <support@acme.com>', to_domains: ['acme.com'] },
    },
  });
});

afterAll(async () => {
  await Promise.all([twilio.close(), stripe.close(), resend.close()]);
  await tdb.close();
});

beforeEach(() => {
  for (const s of [twilio, stripe, resend]) s.received.length = 0;
});

const CALLS = {
  twilio: ['send_sms', { to: '+15557654321', body: 'Hi' }],
  stripe: ['issue_refund', { charge: 'ch_canary1', amount: 500 }],
  resend: ['send_email', { to: ['ann@acme.com'], subject: 'x', text: 'y' }],
} as const;

/** Everything that left the pipeline for one call: its result, its audit row and the log lines written meanwhile. */
async function everythingSaid(result: unknown, auditId: string | null, logsFrom: number): Promise<string> {
  const rows = await tdb.db
    .selectFrom('audit_log')
    .selectAll()
    .where('id', '=', auditId ?? '')
    .execute();
  expect(rows).toHaveLength(1);
  return [JSON.stringify(result), JSON.stringify(rows), logs.slice(logsFrom).join('\n')].join('\n');
}

describe.each(Object.entries(ECHOES).map(([vendor, forms]) => [vendor, forms] as const))(
  '%s echoing its credential',
  (vendor, forms) => {
    it.each(Object.entries(forms))(
      'keeps %s out of the result, the audit row and the logs',
      async (_what, form) => {
        echo = form;
        const key = await keyFor(tdb.db, { policy: 'echo' });
        const logsFrom = logs.length;
        const [tool, args] = CALLS[vendor as keyof typeof CALLS];
        const r = await settledRun(deps, key.key, tool, args);
        expect(r.ok).toBe(false);
        if (r.ok) return;
        expect(r.failure.code).toMatch(/^vendor_/);
        const server = { twilio, stripe, resend }[vendor as keyof typeof CALLS];
        expect(server.received.length).toBeGreaterThan(0);
        const said = await everythingSaid(r, r.failure.audit_id, logsFrom);
        for (const f of ALL_FORMS) expect(said).not.toContain(f);
        expect(said).not.toContain(SID);
        if (vendor !== 'resend') expect(r.failure.vendor?.request_id).toContain('[redacted]');
        const row = await tdb.db
          .selectFrom('audit_log')
          .selectAll()
          .where('id', '=', r.failure.audit_id ?? '')
          .executeTakeFirstOrThrow();
        expect(row).toMatchObject({ decision: 'allowed', outcome: 'failed', http_status: 400 });
        expect(row.error).toContain('[redacted]');
      },
    );
  },
);

describe('scrub with secretForms', () => {
  const forms = secretForms({ account_sid: SID, auth_token: TOKEN });

  it.each([
    ['base64 of sid:token inside other text', `x${b64(`zz${SID}:${TOKEN}`)}y`],
    ['base64 of the token at each alignment', [0, 1, 2].map((n) => b64('a'.repeat(n) + TOKEN)).join(' ')],
    ['the token URL-encoded in a form', new URLSearchParams({ t: TOKEN, s: SID }).toString()],
  ])('redacts %s', (_what, text) => {
    const out = scrub(text, forms);
    expect(out).toContain('[redacted]');
    expect(out).not.toContain(TOKEN);
    for (const f of forms.filter((x) => x.length >= 12)) expect(out).not.toContain(f);
  });

  it('leaves text without a secret as it was', () => {
    expect(scrub('Charge ch_123 has already been refunded.', forms)).toBe(
      'Charge ch_123 has already been refunded.',
    );
  });
});
