// The kill switch under load: an agent loop calls a governed tool flat out through one `leash serve` replica
// while an operator revokes its key, (a) with `leash keys revoke` in another process and (b) with one admin
// API call. Counts calls admitted after the revoke returned (must be 0) and how soon the loop saw denials.
//   node dist/bench/revoke.js [--via cli,admin] [--concurrency 8] [--warmup-ms 1000] [--tool issue_refund]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { mintKey } from '../src/keys/vault-keys.js';
import { validatePolicy } from '../src/policy/compile.js';
import { applyPolicy } from '../src/policies/store.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { startStripeFake } from '../tools/stripe/sandbox.js';
import { catalog } from '../tools/index.js';
import {
  ADMIN_TOKEN,
  benchDatabase,
  callTool,
  cleanEnv,
  isMain,
  mcpClient,
  parseFlags,
  printResults,
  round,
  runLeashCli,
  sleep,
  startCluster,
  type BenchResult,
} from './cluster.js';

export type RevokeVia = 'cli' | 'admin';

export interface RevokeOptions {
  /** Which revoke paths to measure, each with a fresh key (default both). */
  via?: RevokeVia[];
  /** Concurrent MCP clients in the agent loop (default 8). */
  concurrency?: number;
  /** How long the loop runs before the revoke (default 1000 ms). */
  warmupMs?: number;
  /** How long the loop keeps going after the revoke returned (default 500 ms). */
  afterMs?: number;
  /** The governed tool the loop calls (default issue_refund of 1 cent). */
  tool?: 'issue_refund' | 'get_payment';
}

interface Call {
  sentAt: number;
  doneAt: number;
  ok: boolean;
  code: string | null;
}

const POLICY = 'bench-revoke';
const CUSTOMER = 'cus_bench_revoke';

export async function runRevoke(o: RevokeOptions = {}): Promise<BenchResult[]> {
  const via = o.via ?? ['cli', 'admin'];
  const concurrency = o.concurrency ?? 8;
  const warmupMs = o.warmupMs ?? 1_000;
  const afterMs = o.afterMs ?? 500;
  const tool = o.tool ?? 'issue_refund';

  const db = await benchDatabase();
  const stripe = await startStripeFake(false);
  const cliHome = await mkdtemp(join(tmpdir(), 'leash-bench-cli-'));
  let cluster: Awaited<ReturnType<typeof startCluster>> | undefined;
  try {
    // One big payment: each call refunds 1 cent of it (or reads it), so the loop never runs out.
    const payment = stripe.addPayment({ amount: 1_000_000_000, customer: CUSTOMER });
    const args: Record<string, unknown> =
      tool === 'issue_refund'
        ? { payment_intent: payment.payment_intent, amount: 1 }
        : { payment_intent: payment.payment_intent };
    await applyPolicy(
      db.handle.db,
      validatePolicy(
        {
          name: POLICY,
          tools: {
            issue_refund: { max_amount_usd: 1, customers: [CUSTOMER] },
            get_payment: { customers: [CUSTOMER] },
          },
        },
        ruleSpecs(catalog),
      ),
    );
    cluster = await startCluster({ replicas: 1, databaseUrl: db.url, stripe, adminToken: ADMIN_TOKEN });
    const replica = cluster.replicas[0];
    if (!replica) throw new Error('no replica');
    const cliEnv = cleanEnv({ DATABASE_URL: db.url, LEASH_HOME: cliHome, LEASH_LOG: 'error' });

    const results: BenchResult[] = [];
    for (const path of via) {
      const key = await mintKey(db.handle.db, {
        agent: `revoke-bench-${path}`,
        policy: POLICY,
        runId: `revoke-${path}-${Date.now()}`,
        expiresAt: new Date(Date.now() + 3_600_000),
      });
      const clients = await Promise.all(
        Array.from({ length: concurrency }, () => mcpClient(replica.mcpUrl, key.key, 'runaway-agent')),
      );
      const refundsBefore = stripe.refunds.size;
      const calls: Call[] = [];
      let stopAt = Infinity;
      const loopStart = performance.now();
      const loops = clients.map(async (c) => {
        // Hard stop after 60 s in case the revoke never lands.
        while (performance.now() < stopAt && performance.now() - loopStart < 60_000) {
          const sentAt = performance.now();
          const r = await callTool(c, tool, args);
          calls.push({ sentAt, doneAt: performance.now(), ok: r.ok, code: r.code });
        }
      });

      await sleep(warmupMs);
      const revokeStart = performance.now();
      let revokeOk: boolean;
      let revokeDetail: string;
      if (path === 'cli') {
        const r = await runLeashCli(['keys', 'revoke', key.id, '--json'], cliEnv);
        revokeOk = r.code === 0 && r.stdout.includes(key.id);
        revokeDetail = `exit ${r.code}: ${(r.stdout || r.stderr).trim().slice(0, 200)}`;
      } else {
        const res = await fetch(`${replica.url}/admin/keys/${key.id}/revoke`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        const text = await res.text();
        revokeOk = res.ok && text.includes(key.id);
        revokeDetail = `HTTP ${res.status}: ${text.slice(0, 200)}`;
      }
      const revokeReturned = performance.now();
      stopAt = revokeReturned + afterMs;
      await Promise.all(loops);
      await Promise.all(clients.map((c) => c.close()));

      const row = await sql<{
        revoked_ms: number;
        allowed_after: number;
        allowed_after_max_ms: number | null;
        allowed: number;
      }>`
        select extract(epoch from k.revoked_at) * 1000 as revoked_ms,
          (select count(*)::int from audit_log a where a.key_id = k.id and a.decision = 'allowed'
             and a.ts > k.revoked_at) as allowed_after,
          (select extract(epoch from max(a.ts) - k.revoked_at) * 1000 from audit_log a
            where a.key_id = k.id and a.decision = 'allowed' and a.ts > k.revoked_at) as allowed_after_max_ms,
          (select count(*)::int from audit_log a where a.key_id = k.id and a.decision = 'allowed') as allowed
        from vault_keys k where k.id = ${key.id}`.execute(db.handle.db);
      const dbRow = row.rows[0];
      // Same machine, same clock: the DB's revoked_at (now() of the revoking statement) on the loop's timeline.
      const revokedAtLocal = dbRow ? Number(dbRow.revoked_ms) - performance.timeOrigin : NaN;

      const before = calls.filter((c) => c.doneAt <= revokeStart);
      const beforeSpan = before.length ? Math.max(...before.map((c) => c.doneAt)) - loopStart : 0;
      const sentAfterReturn = calls.filter((c) => c.sentAt >= revokeReturned);
      const admittedAfterReturn = sentAfterReturn.filter((c) => c.ok).length;
      const denials = calls.filter((c) => c.code === 'key_revoked');
      const firstDenial = denials.length ? Math.min(...denials.map((c) => c.doneAt)) : NaN;
      const inFlight = (t: number) => calls.filter((c) => c.sentAt <= t && c.doneAt > t).length;
      const okCompletedAfterReturn = calls.filter(
        (c) => c.ok && c.sentAt < revokeReturned && c.doneAt > revokeReturned,
      ).length;
      const codesAfter = new Map<string, number>();
      for (const c of sentAfterReturn)
        codesAfter.set(c.code ?? 'ok', (codesAfter.get(c.code ?? 'ok') ?? 0) + 1);
      const admittedTotal = calls.filter((c) => c.ok).length;
      const refunds = stripe.refunds.size - refundsBefore;

      const notes: string[] = [
        `revoke (${path}) ${revokeOk ? 'ok' : 'FAILED'}: ${revokeDetail}`,
        `admitted after the revoke returned: ${admittedAfterReturn} ${admittedAfterReturn === 0 ? 'OK' : 'FAIL'}`,
        `allowed audit rows with ts > revoked_at (DB clock): ${dbRow?.allowed_after ?? '?'} ${dbRow?.allowed_after === 0 ? 'OK' : `FAIL (latest ${round(Number(dbRow?.allowed_after_max_ms), 2)} ms after revoked_at, which is now() of the revoking statement, not its commit)`}`,
        `results of calls sent after the revoke returned: ${[...codesAfter].map(([c, n]) => `${c}=${n}`).join(', ') || 'none'}`,
      ];
      if (firstDenial < revokeReturned)
        notes.push(
          'first_denial_after_return_ms < 0: the loop saw key_revoked before the revoke returned (the commit precedes the exit / HTTP response)',
        );
      if (tool === 'issue_refund')
        notes.push(
          `refunds at the fake ${refunds} vs calls admitted ${admittedTotal} vs allowed rows ${dbRow?.allowed ?? '?'}`,
        );
      const replicaErrors = replica.errors.length;
      if (replicaErrors) notes.push(`replica error log lines so far: ${replicaErrors}`);

      results.push({
        name: `revoke via ${path === 'cli' ? '`leash keys revoke` (another process)' : 'admin API (POST /admin/keys/:id/revoke)'}`,
        params: { via: path, concurrency, tool, warmupMs, afterMs },
        figures: {
          loop_calls_per_s: before.length && beforeSpan ? round(before.length / (beforeSpan / 1000), 1) : 0,
          calls_total: calls.length,
          calls_before_revoke: before.length,
          in_flight_at_revoke_start: inFlight(revokeStart),
          in_flight_at_revoke_return: inFlight(revokeReturned),
          revoke_ms: round(revokeReturned - revokeStart, 1),
          revoked_at_after_start_ms: round(revokedAtLocal - revokeStart, 1),
          first_denial_after_return_ms: round(firstDenial - revokeReturned, 1),
          first_denial_after_start_ms: round(firstDenial - revokeStart, 1),
          admitted_sent_during_revoke: calls.filter(
            (c) => c.ok && c.sentAt >= revokeStart && c.sentAt < revokeReturned,
          ).length,
          admitted_completing_after_return: okCompletedAfterReturn,
          calls_sent_after_return: sentAfterReturn.length,
          admitted_after_return: admittedAfterReturn,
          db_allowed_after_revoked_at: dbRow?.allowed_after ?? -1,
        },
        notes,
      });
    }
    return results;
  } finally {
    await cluster?.close();
    await stripe.close();
    await db.close();
    await rm(cliHome, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  const f = parseFlags(process.argv.slice(2));
  const opts: RevokeOptions = {};
  if (f.via) opts.via = f.via.split(',').filter((v): v is RevokeVia => v === 'cli' || v === 'admin');
  if (f.concurrency) opts.concurrency = Number(f.concurrency);
  if (f['warmup-ms']) opts.warmupMs = Number(f['warmup-ms']);
  if (f['after-ms']) opts.afterMs = Number(f['after-ms']);
  if (f.tool === 'get_payment' || f.tool === 'issue_refund') opts.tool = f.tool;
  printResults(await runRevoke(opts));
}
