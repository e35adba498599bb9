// Zero cap overshoot across replicas: N concurrent `issue_refund` calls spread round-robin over R separate
// `leash serve` processes on one database, against a policy daily cap that fits exactly K refunds.
//   node dist/bench/caps.js [--replicas 4] [--calls 500] [--refund-cents 30] [--cap-usd 50] [--clients 4]
import { sql } from 'kysely';
import { mintKey } from '../src/keys/vault-keys.js';
import { validatePolicy } from '../src/policy/compile.js';
import { applyPolicy } from '../src/policies/store.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { startStripeFake } from '../tools/stripe/sandbox.js';
import { catalog } from '../tools/index.js';
import {
  benchDatabase,
  callTool,
  isMain,
  mcpClient,
  parseFlags,
  percentile,
  printResults,
  round,
  startCluster,
  type BenchResult,
  type CallOutcome,
} from './cluster.js';

export interface CapsOptions {
  /** `leash serve` processes (default 4). */
  replicas?: number;
  /** Concurrent issue_refund calls, all started at once (default 500). */
  calls?: number;
  /** Each refund, in cents (default 30 = $0.30). */
  refundCents?: number;
  /** The policy's `limits.daily_usd` (default 50, so 166 refunds of $0.30 fit). */
  capUsd?: number;
  /** MCP clients per replica the calls are spread over (default 4). */
  clientsPerReplica?: number;
}

const POLICY = 'bench-caps';
const CUSTOMERS = Array.from({ length: 10 }, (_, i) => `cus_bench_${i}`);

export async function runCaps(o: CapsOptions = {}): Promise<BenchResult[]> {
  const replicas = o.replicas ?? 4;
  const calls = o.calls ?? 500;
  const refundCents = o.refundCents ?? 30;
  const capUsd = o.capUsd ?? 50;
  const clientsPerReplica = o.clientsPerReplica ?? 4;
  const refundMicros = refundCents * 10_000;
  const capMicros = Math.round(capUsd * 1_000_000);
  const expected = Math.min(calls, Math.floor(capMicros / refundMicros));

  const db = await benchDatabase();
  const stripe = await startStripeFake(false);
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
  try {
    const payments = Array.from({ length: calls }, (_, i) =>
      stripe.addPayment({ amount: 10_000, customer: CUSTOMERS[i % CUSTOMERS.length] ?? null }),
    );
    // Warm-up target: a customer the policy does not allow, so warming a replica spends nothing.
    const stranger = stripe.addPayment({ amount: 10_000, customer: 'cus_not_allowed' });
    const doc = validatePolicy(
      {
        name: POLICY,
        limits: { daily_usd: capUsd },
        tools: { issue_refund: { max_amount_usd: 100, customers: CUSTOMERS } },
      },
      ruleSpecs(catalog),
    );
    await applyPolicy(db.handle.db, doc);
    const key = await mintKey(db.handle.db, {
      agent: 'caps-bench',
      policy: POLICY,
      runId: `caps-${Date.now()}`,
      expiresAt: new Date(Date.now() + 3_600_000),
    });

    cluster = await startCluster({ replicas, databaseUrl: db.url, stripe });
    const clients = await Promise.all(
      cluster.replicas.flatMap((r) =>
        Array.from({ length: clientsPerReplica }, () => mcpClient(r.mcpUrl, key.key, 'caps-bench')),
      ),
    );
    // clients[replica * clientsPerReplica + j]; call i goes to replica i % R, its client (i / R) % C.
    const clientFor = (i: number) =>
      clients[(i % replicas) * clientsPerReplica + (Math.floor(i / replicas) % clientsPerReplica)];

    // One denied call per replica: loads the policy, builds the Stripe client and opens pool connections.
    const warm = await Promise.all(
      cluster.replicas.map((_, r) => {
        const client = clients[r * clientsPerReplica];
        return client
          ? callTool(client, 'issue_refund', { payment_intent: stranger.payment_intent, amount: refundCents })
          : Promise.resolve({ ok: false, code: 'no_client', structured: undefined });
      }),
    );
    const refundsBefore = stripe.refunds.size;

    const latencies: number[] = [];
    const outcomes: CallOutcome[] = [];
    const started = performance.now();
    await Promise.all(
      payments.map(async (p, i) => {
        const t = performance.now();
        const client = clientFor(i);
        const r = client
          ? await callTool(client, 'issue_refund', { payment_intent: p.payment_intent, amount: refundCents })
          : { ok: false, code: 'no_client', structured: undefined };
        latencies.push(performance.now() - t);
        outcomes.push(r);
      }),
    );
    const wallMs = performance.now() - started;
    await Promise.all(clients.map((c) => c.close()));

    const admitted = outcomes.filter((r) => r.ok).length;
    const codes = new Map<string, number>();
    for (const r of outcomes) if (!r.ok) codes.set(r.code ?? '?', (codes.get(r.code ?? '?') ?? 0) + 1);

    const window = await db.handle.db
      .selectFrom('spend_windows')
      .select(['spent_micros', 'reserved_micros', 'window_start'])
      .where('scope', '=', `policy:${POLICY}`)
      .where('kind', '=', 'usd_day')
      .execute();
    const spent = window.reduce((s, w) => s + w.spent_micros, 0);
    const reserved = window.reduce((s, w) => s + w.reserved_micros, 0);
    const audit = await sql<{ decision: string; reason: string | null; outcome: string; n: number }>`
      select decision, reason, outcome, count(*)::int as n from audit_log
       where key_id = ${key.id} and tool = 'issue_refund'
         and coalesce(reason, '') <> 'customer_not_allowed'
       group by 1, 2, 3 order by 1, 2, 3`.execute(db.handle.db);
    const allowedRows = audit.rows.filter((r) => r.decision === 'allowed').reduce((s, r) => s + r.n, 0);
    const succeededRows = audit.rows
      .filter((r) => r.decision === 'allowed' && r.outcome === 'succeeded')
      .reduce((s, r) => s + r.n, 0);
    const fakeRefunds = [...stripe.refunds.values()];
    const refundsCreated = stripe.refunds.size - refundsBefore;
    const refundedMicros = fakeRefunds.reduce((s, r) => s + r.amount, 0) * 10_000;
    const overshoot = Math.max(0, spent + reserved - capMicros);
    const replicaErrors = cluster.replicas.reduce((s, r) => s + r.errors.length, 0);

    const notes: string[] = [
      `admitted ${admitted} vs expected ${expected}: ${admitted === expected ? 'OK' : 'MISMATCH'}`,
      `overshoot ${overshoot} micros: ${overshoot === 0 ? 'OK' : 'FAIL'}`,
      `refunds at the fake ${refundsCreated} vs admitted ${admitted}: ${refundsCreated === admitted ? 'OK' : 'MISMATCH'}`,
      `audit: ${audit.rows.map((r) => `${r.decision}/${r.reason ?? '-'}/${r.outcome}=${r.n}`).join(', ')}`,
      `refusals seen by clients: ${[...codes].map(([c, n]) => `${c}=${n}`).join(', ') || 'none'}`,
      `warm-up (one denied call per replica): ${warm.map((w) => w.code ?? 'ok').join(', ')}`,
    ];
    if (window.length > 1) notes.push(`calls spanned ${window.length} UTC days; figures sum the windows`);
    if (replicaErrors)
      notes.push(
        `replica error log lines: ${replicaErrors} (first: ${cluster.replicas.find((r) => r.errors.length)?.errors[0]?.slice(0, 300) ?? ''})`,
      );

    return [
      {
        name: 'caps: concurrent refunds across replicas vs policy daily cap',
        params: { replicas, calls, refund_usd: refundCents / 100, cap_usd: capUsd, clientsPerReplica },
        figures: {
          expected_admitted: expected,
          admitted,
          denied_budget_exceeded: codes.get('budget_exceeded') ?? 0,
          other_refusals: calls - admitted - (codes.get('budget_exceeded') ?? 0),
          cap_usd: capUsd,
          spent_usd: spent / 1e6,
          reserved_usd: reserved / 1e6,
          overshoot_micros: overshoot,
          audit_allowed_rows: allowedRows,
          audit_succeeded_rows: succeededRows,
          refunds_at_fake: refundsCreated,
          refunded_usd_at_fake: refundedMicros / 1e6,
          wall_ms: round(wallMs, 1),
          calls_per_s: round(calls / (wallMs / 1000), 1),
          p50_ms: round(percentile(latencies, 50), 1),
          p99_ms: round(percentile(latencies, 99), 1),
          max_ms: round(Math.max(...latencies), 1),
        },
        notes,
      },
    ];
  } finally {
    await cluster?.close();
    await stripe.close();
    await db.close();
  }
}

if (isMain(import.meta.url)) {
  const f = parseFlags(process.argv.slice(2));
  const opts: CapsOptions = {};
  if (f.replicas) opts.replicas = Number(f.replicas);
  if (f.calls) opts.calls = Number(f.calls);
  if (f['refund-cents']) opts.refundCents = Number(f['refund-cents']);
  if (f['cap-usd']) opts.capUsd = Number(f['cap-usd']);
  if (f.clients) opts.clientsPerReplica = Number(f.clients);
  printResults(await runCaps(opts));
}
