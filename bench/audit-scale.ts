// The operator's questions on the partitioned audit_log as it grows (issue 28 item 3): generates rows in time order,
// 1 M per statement, across monthly partitions (leash's own, made with ensureAuditPartitions), and at each size times
// the questions the way `leash audit query` runs them (auditQuery, one plain query each, planning included): by agent,
// by run, by key, over $X, last N, plus an agent's day, the tail's poll and the loop guard's count. Target ≤ 20 ms.
//   node dist/bench/audit-scale.js [--rows 10000000] [--steps 1000000,3000000,10000000] [--days 45] [--repeats 5]
import { auditQuery, type AuditFilter } from '../src/audit/query.js';
import { pollQuery } from '../src/audit/watch.js';
import { ensureAuditPartitions, listAuditPartitions, monthStart } from '../src/audit/partitions.js';
import { generateAuditRows } from './audit-volume.js';
import {
  benchDatabase,
  isMain,
  median,
  parseFlags,
  printResults,
  round,
  type BenchResult,
} from './cluster.js';

export interface AuditScaleOptions {
  /** Rows at the largest size (default 10,000,000). */
  rows?: number | undefined;
  /** Sizes to time at (default 1 M, 3 M, then `rows`). */
  steps?: number[] | undefined;
  /** Days the largest size spans, ending now (default 45: two or three monthly partitions). */
  days?: number | undefined;
  repeats?: number | undefined;
  targetMs?: number | undefined;
}

const CHUNK = 1_000_000;

export async function runAuditScale(o: AuditScaleOptions = {}): Promise<BenchResult[]> {
  const rows = o.rows ?? 10_000_000;
  const steps = (o.steps ?? [1_000_000, 3_000_000, rows]).filter((s) => s <= rows).sort((a, b) => a - b);
  const days = o.days ?? 45;
  const repeats = o.repeats ?? 5;
  const target = o.targetMs ?? 20;
  const db = await benchDatabase({ poolMax: 4 });
  const pool = db.handle.pool;
  const end = new Date();
  const start = new Date(end.getTime() - days * 86_400_000);
  const results: BenchResult[] = [];
  try {
    const months =
      (end.getUTCFullYear() - start.getUTCFullYear()) * 12 + end.getUTCMonth() - start.getUTCMonth();
    await ensureAuditPartitions(db.handle.db, { now: monthStart(start), ahead: months + 2 });
    let have = 0;
    let genMs = 0;
    for (const step of steps) {
      while (have < step) {
        const n = Math.min(CHUNK, step - have);
        // Each chunk is the next slice of the span: the log grows in time order, as it does in production.
        const from = new Date(start.getTime() + (have / rows) * days * 86_400_000);
        const t0 = performance.now();
        await generateAuditRows(pool, {
          rows: n,
          start: from,
          days: (n / rows) * days,
          agents: 50,
          runs: 5_000,
        });
        genMs += performance.now() - t0;
        have += n;
      }
      await pool.query('analyze audit_log');
      const edge = new Date(start.getTime() + (have / rows) * days * 86_400_000);
      const day = new Date(edge.getTime() - 86_400_000);
      const probe = await pool.query<{ key_id: string; run_id: string; args_hash: string; ts: Date }>(
        `select key_id, run_id, args_hash, ts from audit_log where ts >= $1 and decision = 'allowed' order by ts limit 1`,
        [day],
      );
      const p = probe.rows[0];
      const questions: {
        name: string;
        filter?: AuditFilter;
        sql?: { text: string; values: unknown[] } | undefined;
      }[] = [
        { name: 'by agent (newest 100)', filter: { agent: 'agent-07', limit: 100 } },
        { name: 'by agent, one day', filter: { agent: 'agent-07', since: day, until: edge, limit: 1000 } },
        { name: 'by run', filter: { run: p?.run_id ?? 'run-1', limit: 1000 } },
        { name: 'by key', filter: { keyId: p?.key_id ?? 'k', limit: 1000 } },
        {
          name: 'over $100 (newest 100 refunds)',
          filter: { tool: 'issue_refund', minUsdMicros: 100_000_000, limit: 100 },
        },
        { name: 'last 100', filter: { limit: 100 } },
        { name: 'last 100 denied', filter: { decision: 'denied', limit: 100 } },
        { name: 'tail poll (last 2 s)', sql: undefined },
        {
          name: 'loop guard count',
          sql: {
            text: `select count(*)::int from audit_log a where a.key_id = $1 and a.args_hash = $2
                     and a.decision = 'allowed' and a.ts > $3::timestamptz - interval '10 minutes'`,
            values: [p?.key_id ?? '', p?.args_hash ?? '', p?.ts ?? day],
          },
        },
      ];
      const figures: Record<string, number | string> = {};
      let worst = 0;
      for (const q of questions) {
        const c = q.sql
          ? q.sql
          : (() => {
              const built = q.filter
                ? auditQuery(db.handle.db, q.filter)
                : pollQuery(db.handle.db, {}, new Date(edge.getTime() - 2_000), []);
              const k = built.compile();
              return { text: k.sql, values: [...k.parameters] };
            })();
        await pool.query(c.text, c.values); // warm-up
        const ms: number[] = [];
        for (let i = 0; i < repeats; i++) {
          const t0 = performance.now();
          await pool.query(c.text, c.values);
          ms.push(performance.now() - t0);
        }
        const m = round(median(ms));
        worst = Math.max(worst, m);
        figures[`${q.name} ms`] = m;
      }
      const size = await pool.query<{ total: string; per_row: string }>(
        `select pg_size_pretty(sum(pg_total_relation_size(i.inhrelid))) as total,
                round(sum(pg_total_relation_size(i.inhrelid)) / greatest($1::numeric, 1)) as per_row
           from pg_inherits i where i.inhparent = 'audit_log'::regclass`,
        [have],
      );
      const parts = await listAuditPartitions(db.handle.db);
      figures['slowest median ms'] = worst;
      figures['target met'] = worst <= target ? 'yes' : 'no';
      results.push({
        name: `audit scale: ${(have / 1e6).toFixed(have % 1e6 ? 1 : 0)} M rows`,
        params: { rows: have, days: round((have / rows) * days, 1), repeats, partitions: parts.length },
        figures,
        notes: [
          `on disk ${size.rows[0]?.total ?? '?'} with indexes (${size.rows[0]?.per_row ?? '?'} bytes a row); ` +
            `${parts.length} partitions; generated so far in ${round(genMs / 1000, 1)} s`,
        ],
      });
    }
  } finally {
    await db.close();
  }
  return results;
}

if (isMain(import.meta.url)) {
  const flags = parseFlags(process.argv.slice(2));
  const num = (k: string) => (flags[k] === undefined ? undefined : Number(flags[k]));
  const results = await runAuditScale({
    rows: num('rows'),
    steps: flags.steps === undefined ? undefined : flags.steps.split(',').map(Number),
    days: num('days'),
    repeats: num('repeats'),
  });
  printResults(results);
}
