// The REST front door's overhead: stripe-node calling the fake Stripe directly vs. the same SDK pointed at a
// `leash serve` replica (vault key as API key) in front of that fake, in the same run, at concurrency 1 and 16.
import Stripe from 'stripe';
import { mintKey } from '../src/keys/vault-keys.js';
import { validatePolicy } from '../src/policy/compile.js';
import { applyPolicy } from '../src/policies/store.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { catalog } from '../tools/index.js';
import { benchDatabase, FAKE_STRIPE_KEY, startCluster } from './cluster.js';
import { isMain, measureLoop, round, summarize, type Result } from './support.js';

export interface ProxyOptions {
  calls: number;
  concurrencies: number[];
  log?: (line: string) => void;
}

const POLICY = {
  name: 'bench-proxy',
  tools: {},
  vendors: {
    stripe: { http: { 'GET /v1/payment_intents/{id}': {}, 'POST /v1/refunds': {} } },
  },
};

function sdk(key: string, url: string): Stripe {
  const u = new URL(url);
  return new Stripe(key, { host: u.hostname, port: Number(u.port), protocol: 'http', maxNetworkRetries: 0 });
}

/** Measures direct vs. proxied for one operation at each concurrency. */
export async function runProxy(o: ProxyOptions): Promise<Result[]> {
  const db = await benchDatabase({ poolMax: 4 });
  const cluster = await startCluster({ replicas: 1, databaseUrl: db.url });
  const results: Result[] = [];
  try {
    await applyPolicy(db.handle.db, validatePolicy(POLICY, ruleSpecs(catalog)));
    const pay = cluster.stripe.addPayment({ customer: 'cus_bench', amount: 99_999_999 });
    const direct = sdk(FAKE_STRIPE_KEY, cluster.stripe.url);
    const ops = {
      'GET /v1/payment_intents/{id}': async (s: Stripe) => {
        await s.paymentIntents.retrieve(pay.payment_intent);
      },
      // leash also reads the payment first (as issue_refund does): two vendor calls to the direct one.
      'POST /v1/refunds': async (s: Stripe) => {
        await s.refunds.create({ payment_intent: pay.payment_intent, amount: 1 });
      },
    };
    for (const [op, call] of Object.entries(ops)) {
      for (const c of o.concurrencies) {
        // A key per run keeps every key's hourly request window and loop guard out of the way.
        const key = await mintKey(db.handle.db, { agent: 'bench', policy: POLICY.name });
        const proxied = sdk(key.key, cluster.replicas[0]!.url);
        const warm = async (s: Stripe) => {
          for (let i = 0; i < 20; i++) await call(s);
        };
        await warm(direct);
        await warm(proxied);
        const d = await measureLoop({ concurrency: c, calls: o.calls, call: () => call(direct) });
        const p = await measureLoop({ concurrency: c, calls: o.calls, call: () => call(proxied) });
        const sd = summarize(d.latencies);
        const sp = summarize(p.latencies);
        const name = `proxy.${op.startsWith('GET') ? 'read' : 'refund'}.c${c}`;
        o.log?.(`  ${name}: direct p50 ${round(sd.p50)} ms, via leash p50 ${round(sp.p50)} ms`);
        results.push({
          name,
          params: { operation: op, concurrency: c, calls: o.calls },
          figures: {
            direct_p50_ms: round(sd.p50),
            direct_p95_ms: round(sd.p95),
            direct_calls_per_s: round(d.callsPerSec),
            proxy_p50_ms: round(sp.p50),
            proxy_p95_ms: round(sp.p95),
            proxy_calls_per_s: round(p.callsPerSec),
            added_p50_ms: round(sp.p50 - sd.p50),
            errors: d.errors + p.errors,
          },
          notes: [
            'stripe-node in this process; the fake Stripe in this process; one `leash serve` replica in a child process',
            ...(p.firstError ? [`first proxy error: ${p.firstError}`] : []),
          ],
        });
      }
    }
  } finally {
    await cluster.close();
    await db.close();
  }
  return results;
}

if (isMain(import.meta.url)) {
  const results = await runProxy({
    calls: process.argv.includes('--full') ? 2000 : 400,
    concurrencies: [1, 16],
    log: (l) => process.stderr.write(`${l}\n`),
  });
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
}
