// Child process for bench/overhead: the fake vendors, leash's real HTTP server (in-process pipeline on
// DATABASE_URL) and the bare server, so the benchmark's MCP clients do not share the servers' event loop.
// Prints one JSON line (ServeBothReady) on stdout when ready; exits on SIGTERM/SIGINT.
//
//   DATABASE_URL=postgres://… node dist/bench/serve-both.js
import { writeFileSync } from 'node:fs';
import { createLogger } from '../src/config/logger.js';
import { loadConfig } from '../src/config/config.js';
import { openDatabase } from '../src/db/database.js';
import { mintKey } from '../src/keys/vault-keys.js';
import { createPipeline } from '../src/pipeline/run-tool.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { validatePolicy } from '../src/policy/compile.js';
import { applyPolicy } from '../src/policies/store.js';
import { startHttpServer } from '../src/server/http.js';
import { catalog, catalogVendors } from '../tools/index.js';
import { startResendFake } from '../tools/resend/sandbox.js';
import { startStripeFake } from '../tools/stripe/sandbox.js';
import { startTwilioFake } from '../tools/twilio/sandbox.js';
import { startBareServer } from './bare-server.js';
import { isMain, runMain } from './support.js';

/** What serve-both prints once everything listens. */
export interface ServeBothReady {
  pid: number;
  /** leash's base URL; MCP at `${leash}/mcp`, vault key as Bearer. */
  leash: string;
  /** The bare server's base URL; MCP at `${bare}/mcp`. */
  bare: string;
  vaultKey: string;
  /** PaymentIntents of `cus_bench` on the fake Stripe, each refundable many times over in 1-cent refunds. */
  paymentIntents: string[];
  fakes: { stripe: string; twilio: string; resend: string };
  /** The policy leash runs under, as applied. */
  policy: unknown;
}

export const SMS_FROM = '+15550001111';
export const EMAIL_FROM = 'Bench <bench@acme.com>';
export const BENCH_CUSTOMER = 'cus_bench';

/** Generous caps (every scope present, none reached) and no loop guard: the admission path does all its work. */
export const BENCH_POLICY = {
  name: 'bench',
  limits: {
    daily_usd: 1_000_000,
    per_key_daily_usd: 1_000_000,
    hourly_requests: 100_000_000,
    per_key_hourly_requests: 100_000_000,
  },
  tools: {
    issue_refund: { max_amount_usd: 50, customers: [BENCH_CUSTOMER] },
    send_sms: { from: SMS_FROM, to_prefixes: ['+1'], max_segments: 3 },
    send_email: { from: EMAIL_FROM, to_domains: ['acme.com'], max_recipients: 5 },
    get_budget: {},
  },
};

/** Two wires on the bench key (per key, enforce, pause), far above anything a run reaches. */
export const BENCH_TRIPWIRES = [
  { when: { calls_per_minute: 100_000_000 } },
  { when: { spend_usd_per_10m: 1_000_000 } },
];

const SECRETS = {
  STRIPE_SECRET_KEY: 'sk_test_bench0a1b2c3d4e5f',
  TWILIO_ACCOUNT_SID: `AC${'b3'.repeat(16)}`,
  TWILIO_AUTH_TOKEN: 'be4c'.repeat(8),
  RESEND_API_KEY: 're_bench_q1w2e3r4t5y6',
};

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL;
  if (!databaseUrl) throw new Error('serve-both needs DATABASE_URL');
  const poolMax = Number(process.env.LEASH_DB_POOL_MAX ?? 16); // what `leash serve` uses: max(poolMax, 16)

  const [stripe, twilio, resend] = await Promise.all([
    startStripeFake(false),
    startTwilioFake(),
    startResendFake(),
  ]);
  // The fakes record every request; a long run does not need that history.
  const trim = setInterval(() => {
    stripe.received.length = 0;
    twilio.received.length = 0;
    resend.received.length = 0;
  }, 2000);
  trim.unref();
  const paymentIntents = Array.from(
    { length: 8 },
    () => stripe.addPayment({ customer: BENCH_CUSTOMER, amount: 1_000_000_000 }).payment_intent,
  );

  const config = loadConfig(
    {
      DATABASE_URL: databaseUrl,
      LEASH_HOME: '/nonexistent/leash-bench-home',
      LEASH_LOG: process.env.LEASH_LOG ?? 'info',
      ...SECRETS,
      LEASH_STRIPE_BASE_URL: stripe.url,
      LEASH_TWILIO_BASE_URL: twilio.url,
      LEASH_RESEND_BASE_URL: resend.url,
    },
    catalogVendors,
  );
  const handle = await openDatabase(config, { poolMax });
  // LEASH_BENCH_CAPS=0 drops every cap (no spend windows touched): a diagnostic for hot budget rows.
  const capped = process.env.LEASH_BENCH_CAPS === '0' ? { ...BENCH_POLICY, limits: {} } : BENCH_POLICY;
  // LEASH_BENCH_TRIPWIRES=1 adds two tripwires on the bench key, never reached: their cost on the admission path.
  const policy =
    process.env.LEASH_BENCH_TRIPWIRES === '1' ? { ...capped, tripwires: BENCH_TRIPWIRES } : capped;
  const doc = validatePolicy(policy, ruleSpecs(catalog));
  await applyPolicy(handle.db, doc);
  const key = await mintKey(handle.db, {
    agent: 'bench-agent',
    runId: `bench-${Date.now()}`,
    policy: doc.name,
    expiresAt: new Date(Date.now() + 24 * 3600_000),
  });
  // LEASH_BENCH_PHASES=<file>: where leash's time per call goes, per tool (whole call, admission, vendor), at exit.
  const phases = new Map<string, { ms: number[]; admit: number[]; vendor: number[] }>();
  const deps = createPipeline({
    db: handle.db,
    config,
    catalog,
    sandbox: false,
    log: createLogger(config),
    ...(process.env.LEASH_BENCH_PHASES && {
      onEvent: (e) => {
        if (e.type !== 'finished' || e.decision !== 'allowed') return;
        const t = phases.get(e.tool) ?? { ms: [], admit: [], vendor: [] };
        phases.set(e.tool, t);
        t.ms.push(e.ms);
        if (e.admit_ms !== null) t.admit.push(e.admit_ms);
        if (e.vendor_ms !== null) t.vendor.push(e.vendor_ms);
      },
    }),
  });
  const leash = await startHttpServer(deps, { host: '127.0.0.1', port: 0 });
  const bare = await startBareServer({
    twilioUrl: twilio.url,
    resendUrl: resend.url,
    stripeUrl: stripe.url,
    twilio: { accountSid: SECRETS.TWILIO_ACCOUNT_SID, authToken: SECRETS.TWILIO_AUTH_TOKEN },
    resendApiKey: SECRETS.RESEND_API_KEY,
    stripeSecretKey: SECRETS.STRIPE_SECRET_KEY,
    smsFrom: SMS_FROM,
    emailFrom: EMAIL_FROM,
    auditPool: handle.pool,
  });

  const ready: ServeBothReady = {
    pid: process.pid,
    leash: leash.url,
    bare: bare.url,
    vaultKey: key.key,
    paymentIntents,
    fakes: { stripe: stripe.url, twilio: twilio.url, resend: resend.url },
    policy,
  };
  process.stdout.write(JSON.stringify(ready) + '\n');

  // Stop on a signal, or when the parent closes our stdin (so a crashed benchmark leaves no server behind).
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
    process.stdin.once('end', resolve);
    process.stdin.resume();
  });
  if (process.env.LEASH_BENCH_PHASES) {
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? null;
    writeFileSync(
      process.env.LEASH_BENCH_PHASES,
      JSON.stringify(
        Object.fromEntries(
          [...phases].map(([tool, t]) => [
            tool,
            {
              calls: t.ms.length,
              p50_ms: median(t.ms),
              p50_admit_ms: median(t.admit),
              p50_vendor_ms: median(t.vendor),
            },
          ]),
        ),
      ) + '\n',
    );
  }
  await Promise.allSettled([leash.close(), bare.close()]);
  await Promise.allSettled([handle.close(), stripe.close(), twilio.close(), resend.close()]);
  process.exit(0);
}

if (isMain(import.meta.url)) runMain(main);
