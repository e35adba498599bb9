// The operator's questions at audit-log scale: generate N realistic audit rows (30 days, ~50 agents, ~5,000 runs,
// several tools, ~8% denied, refunds with a long tail) in one INSERT … SELECT, then time `queryAudit` for the
// common questions and `tailAudit` catching up, with EXPLAIN (ANALYZE, BUFFERS) of each. Target: ≤ 20 ms each.
//   node dist/bench/audit-volume.js [--rows 1000000] [--repeats 5]
import pg from 'pg';
import { auditQuery, queryAudit, type AuditFilter, type AuditRow } from '../src/audit/query.js';
import { tailAudit } from '../src/audit/tail.js';
import { uuidv7 } from '../src/audit/uuid.js';
import { dayStart } from '../src/ledger/windows.js';
import {
  benchDatabase,
  isMain,
  median,
  parseFlags,
  printResults,
  round,
  type BenchDatabase,
  type BenchResult,
} from './cluster.js';

export interface AuditVolumeOptions {
  /** Audit rows to generate (default 1,000,000). */
  rows?: number;
  /** Timed runs per question after one warm-up; the median is reported (default 5). */
  repeats?: number;
  /** Days the rows spread over, ending now (default 30). */
  days?: number;
  agents?: number;
  runs?: number;
  /** Per-query target in ms (default 20). */
  targetMs?: number;
}

/**
 * One statement. Rows are in time order (as an append-only log is), ids are UUIDv7-shaped from ts. A run is one
 * agent's key for ~1/1000 of the span, with 5 runs going at any moment; tools 35% refund, 30% payment reads,
 * 20% SMS, 10% email, 5% budget; ~8% denied; refund amounts log-normal (median $12, ~2% over $100, up to $5,000).
 */
function generateSql(rows: number, spanSeconds: number, agents: number, runs: number): string {
  for (const n of [rows, spanSeconds, agents, runs])
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`expected a positive integer, got ${n}`);
  const lanes = 5;
  const slots = Math.max(1, Math.floor(runs / lanes));
  return `
insert into audit_log (id, ts, key_id, agent, run_id, policy, policy_version, tool, vendor, operation, account,
  decision, reason, outcome, reserved_micros, cost_micros, cost_status, amount, currency, vendor_request_id,
  vendor_object_id, http_status, error, request, args_hash, budget, sandbox, latency_ms, settled_at, metadata, usd_micros)
select
  (lpad(to_hex((extract(epoch from ts) * 1000)::bigint), 12, '0') || '7' || substr(h, 1, 3) || '8'
     || substr(h, 4, 15))::uuid,
  ts,
  'k' || lpad(run::text, 11, '0'),
  'agent-' || lpad((run % ${agents})::text, 2, '0'),
  'run-' || run,
  case when run % ${agents} < ${Math.ceil(agents * 0.8)} then 'support-refunds' else 'notifications' end,
  1 + (run % 3),
  tool,
  case tool when 'issue_refund' then 'stripe' when 'get_payment' then 'stripe' when 'send_sms' then 'twilio'
            when 'send_email' then 'resend' end,
  case tool when 'issue_refund' then 'POST /v1/refunds' when 'get_payment' then 'GET /v1/payment_intents/{id}'
            when 'send_sms' then 'POST /2010-04-01/Accounts/{sid}/Messages.json'
            when 'send_email' then 'POST /emails' end,
  null,
  case when denied then 'denied' else 'allowed' end,
  case when denied then (array['budget_exceeded', 'customer_not_allowed', 'amount_over_limit', 'loop_detected',
    'request_limit_exceeded', 'recipient_not_allowed', 'key_revoked', 'key_expired'])[1 + floor(u5 * 8)::int] end,
  case when denied then 'none' when u6 < 0.01 then 'failed' when u6 < 0.0105 then 'unknown' else 'succeeded' end,
  case when not denied and u6 >= 0.01 and u6 < 0.0105 then cost else 0 end,
  case when denied or u6 < 0.0105 then 0 else cost end,
  case when denied or u6 < 0.01 then 'none' when u6 < 0.0105 then 'estimated' else 'settled' end,
  case when tool = 'issue_refund' then cents end,
  case when tool = 'issue_refund' then 'usd' end,
  case when not denied and tool in ('issue_refund', 'get_payment') then 'req_' || substr(h, 8, 14) end,
  case when denied or u6 < 0.0105 then null
       when tool = 'issue_refund' then 're_' || substr(h, 1, 24)
       when tool = 'get_payment' then 'pi_' || substr(h, 5, 24)
       when tool = 'send_sms' then 'SM' || h
       when tool = 'send_email' then substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) end,
  case when denied then null when u6 < 0.01 then 400 when u6 < 0.0105 then null else 200 end,
  case when not denied and u6 < 0.01 then 'rejected: the vendor refused the request' end,
  case tool
    when 'issue_refund' then jsonb_build_object('payment_intent', 'pi_' || substr(h, 5, 24), 'amount', cents)
    when 'get_payment' then jsonb_build_object('payment_intent', 'pi_' || substr(h, 5, 24))
    when 'send_sms' then jsonb_build_object('to', '+1555' || lpad((run % 10000000)::text, 7, '0'),
                                            'body', 'Your order ' || substr(h, 1, 8) || ' has shipped.')
    when 'send_email' then jsonb_build_object('to', jsonb_build_array('user' || run || '@example.com'),
                                              'subject', 'About your ticket ' || substr(h, 1, 6))
    else '{}'::jsonb end,
  substr(md5(h), 1, 32),
  case when denied or cost = 0 then '[]'::jsonb else jsonb_build_array(jsonb_build_object(
    'scope', 'policy:support-refunds', 'kind', 'usd_day', 'window_start', date_trunc('day', ts), 'cap', 500000000))
  end,
  false,
  case when denied then null else 40 + floor(u6 * 400)::int end,
  case when denied then null else ts + interval '250 milliseconds' end,
  case when denied then jsonb_build_object('denial', jsonb_build_object('note', 'generated')) else '{}'::jsonb end,
  case when denied then 0 else cost end
from (
  select *,
    case when tool = 'issue_refund' then cents * 10000
         when tool = 'send_sms' then (1 + floor(u5 * 3)::int) * 8300
         when tool = 'send_email' then (1 + floor(u5 * 3)::int) * 400
         else 0 end::bigint as cost
  from (
    select ts, h, run, u5, u6, u2 < 0.08 as denied,
      case when u1 < 0.35 then 'issue_refund' when u1 < 0.65 then 'get_payment' when u1 < 0.85 then 'send_sms'
           when u1 < 0.95 then 'send_email' else 'get_budget' end as tool,
      least(500000, greatest(50, round(exp(ln(1200) + 1.0 * sqrt(-2 * ln(1 - u3)) * cos(2 * pi() * u4)))))::bigint
        as cents
    from (
      select $1::timestamptz + ((i + random()) / ${rows}) * ${spanSeconds} * interval '1 second' as ts,
        md5(i::text) as h,
        (floor(i::float8 * ${slots} / ${rows}) * ${lanes} + i % ${lanes})::int as run,
        random() as u1, random() as u2, random() as u3, random() as u4, random() as u5, random() as u6
      from generate_series(0, ${rows - 1}) as i
    ) s
  ) t
) c`;
}

/**
 * Appends `rows` generated audit rows spread over `days` from `start`, in one INSERT … SELECT, with the per-row
 * NOTIFY trigger off meanwhile (nobody is tailing a bulk load).
 */
export async function generateAuditRows(
  pool: pg.Pool,
  o: { rows: number; start: Date; days: number; agents: number; runs: number },
): Promise<void> {
  await pool.query('alter table audit_log disable trigger audit_notify');
  try {
    await pool.query(generateSql(o.rows, o.days * 86_400, o.agents, o.runs), [o.start]);
  } finally {
    await pool.query('alter table audit_log enable trigger audit_notify');
  }
}

interface Question {
  name: string;
  filter: AuditFilter;
}

interface Explained {
  top: string;
  scan: string;
  buffers: string;
  execMs: number;
  planningMs: number;
}

async function explain(pool: pg.Pool, db: BenchDatabase, filter: AuditFilter): Promise<Explained> {
  const q = auditQuery(db.handle.db, filter).compile();
  const r = await pool.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers) ${q.sql}`, [
    ...q.parameters,
  ]);
  const lines = r.rows.map((x) => x['QUERY PLAN']);
  const find = (re: RegExp) => lines.find((l) => re.test(l))?.trim() ?? '';
  const ms = (re: RegExp) => Number(/([\d.]+) ms/.exec(find(re))?.[1] ?? NaN);
  return {
    top: lines[0]?.trim() ?? '',
    scan: find(/Scan/),
    buffers: find(/^\s*Buffers:/),
    execMs: ms(/^Execution Time/),
    planningMs: ms(/^Planning Time/),
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t = performance.now();
  const value = await fn();
  return { ms: performance.now() - t, value };
}

/** One `tailAudit` start: ms until its backlog of `backlog` rows arrived, and ms until a new row arrived. */
async function tailOnce(
  db: BenchDatabase,
  writer: pg.Client,
  backlog: number,
): Promise<{ backlogMs: number; firstRowMs: number; afterCommitMs: number; backlogRows: number }> {
  const controller = new AbortController();
  const rows: AuditRow[] = [];
  let waiter: { id?: string; count?: number; resolve: () => void } | undefined;
  const check = () => {
    if (!waiter) return;
    if (
      (waiter.count !== undefined && rows.length >= waiter.count) ||
      (waiter.id !== undefined && rows.some((r) => r.id === waiter?.id))
    ) {
      const w = waiter;
      waiter = undefined;
      w.resolve();
    }
  };
  const until = (w: { id?: string; count?: number }, timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`tail timed out: ${JSON.stringify(w)}`)), timeoutMs);
      waiter = {
        ...w,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      check();
    });

  const started = performance.now();
  const backlogArrived = until({ count: backlog }, 10_000);
  const tail = tailAudit({
    url: db.url,
    filter: {},
    backlog,
    onRow: (row) => {
      rows.push(row);
      check();
    },
    signal: controller.signal,
  });
  try {
    await Promise.race([backlogArrived, tail.then(() => Promise.reject(new Error('tail ended early')))]);
    const backlogMs = performance.now() - started;
    const backlogRows = rows.length;
    // tailAudit LISTENs before it reads the backlog, so a row inserted now is followed.
    const id = uuidv7();
    const arrived = until({ id }, 10_000);
    const insertAt = performance.now();
    await writer.query(
      `insert into audit_log (id, key_id, agent, run_id, policy, policy_version, tool, vendor, operation,
         decision, outcome, reserved_micros, cost_micros, cost_status, amount, currency, request, usd_micros)
       values ($1, 'kbenchtail00', 'agent-07', 'run-tail', 'support-refunds', 1, 'issue_refund', 'stripe',
         'POST /v1/refunds', 'allowed', 'pending', 300000, 0, 'estimated', 30, 'usd', '{"amount":30}', 300000)`,
      [id],
    );
    const committedAt = performance.now();
    await arrived;
    const gotAt = performance.now();
    return { backlogMs, firstRowMs: gotAt - insertAt, afterCommitMs: gotAt - committedAt, backlogRows };
  } finally {
    controller.abort();
    await tail.catch(() => undefined);
  }
}

export async function runAuditVolume(o: AuditVolumeOptions = {}): Promise<BenchResult[]> {
  const rows = o.rows ?? 1_000_000;
  const repeats = o.repeats ?? 5;
  const days = o.days ?? 30;
  const agents = o.agents ?? 50;
  const runs = o.runs ?? 5_000;
  const targetMs = o.targetMs ?? 20;

  const db = await benchDatabase({ poolMax: 4 });
  const pool = db.handle.pool;
  const writer = new pg.Client({ connectionString: db.url });
  try {
    await writer.connect();
    const now = new Date();
    const start = new Date(now.getTime() - days * 86_400_000);

    const gen = await timed(() => generateAuditRows(pool, { rows, start, days, agents, runs }));
    const analyze = await timed(() => pool.query('analyze audit_log'));
    // A 30-day log is long since vacuumed; without this, autovacuum (triggered by the bulk insert) would run
    // during the timings and the first reads would be setting hint bits.
    const vacuum = await timed(() => pool.query('vacuum audit_log'));
    const size = await pool.query<{ heap: string; indexes: string; n: number }>(
      `select pg_size_pretty(pg_table_size('audit_log')) as heap,
              pg_size_pretty(pg_indexes_size('audit_log')) as indexes,
              (select count(*)::int from audit_log) as n`,
    );
    const stats = await pool.query<{ denied: number; refunds_over_100: number; refunds: number }>(
      `select avg((decision = 'denied')::int)::float8 as denied,
              count(*) filter (where tool = 'issue_refund' and usd_micros >= 100000000)::int as refunds_over_100,
              count(*) filter (where tool = 'issue_refund')::int as refunds
         from audit_log`,
    );
    const st = stats.rows[0];

    // A whole UTC day in the middle of the span, a run and an agent that exist.
    const day = dayStart(new Date(now.getTime() - Math.floor(days / 2) * 86_400_000));
    const nextDay = new Date(day.getTime() + 86_400_000);
    const run = `run-${Math.floor(runs / 2)}`;
    const agent = 'agent-07';
    const questions: Question[] = [
      { name: "one run's calls", filter: { run, limit: 1000 } },
      {
        name: "one agent's denied calls in one day",
        filter: { agent, decision: 'denied', since: day, until: nextDay, limit: 1000 },
      },
      {
        name: 'refunds over $100 in one day',
        filter: { tool: 'issue_refund', minUsdMicros: 100_000_000, since: day, until: nextDay, limit: 1000 },
      },
      { name: 'tail backlog query (newest 20)', filter: { order: 'desc', limit: 20 } },
    ];

    const results: BenchResult[] = [];
    const loadNotes = [
      `generated ${size.rows[0]?.n ?? '?'} rows in ${round(gen.ms / 1000, 1)} s (one INSERT … SELECT, notify trigger off), ANALYZE ${round(analyze.ms)} ms`,
      `table ${size.rows[0]?.heap ?? '?'}, indexes ${size.rows[0]?.indexes ?? '?'}`,
      `denied ${round((st?.denied ?? 0) * 100, 1)}%, refunds ${st?.refunds ?? '?'}, refunds ≥ $100 ${st?.refunds_over_100 ?? '?'}`,
    ];
    results.push({
      name: 'audit volume: load',
      params: { rows, days, agents, runs },
      figures: {
        rows: size.rows[0]?.n ?? 0,
        generate_s: round(gen.ms / 1000, 1),
        analyze_ms: round(analyze.ms, 1),
        vacuum_ms: round(vacuum.ms, 1),
        rows_per_s: round(rows / (gen.ms / 1000), 0),
      },
      notes: loadNotes,
    });

    for (const q of questions) {
      await queryAudit(db.handle.db, q.filter); // warm-up
      const times: number[] = [];
      let n = 0;
      for (let i = 0; i < repeats; i++) {
        const t = await timed(() => queryAudit(db.handle.db, q.filter));
        times.push(t.ms);
        n = t.value.length;
      }
      const plan = await explain(pool, db, q.filter);
      const med = median(times);
      results.push({
        name: `audit volume: ${q.name}`,
        params: {
          rows,
          filter: Object.fromEntries(
            Object.entries(q.filter).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]),
          ),
        },
        figures: {
          rows_returned: n,
          median_ms: round(med),
          min_ms: round(Math.min(...times)),
          max_ms: round(Math.max(...times)),
          explain_exec_ms: plan.execMs,
          explain_planning_ms: plan.planningMs,
          target_ms: targetMs,
          verdict: med <= targetMs ? 'ok' : 'MISS',
        },
        notes: [`plan: ${plan.top}`, `scan: ${plan.scan}`, plan.buffers].filter(Boolean),
      });
    }

    // `leash audit tail`: a fresh tail (own connection, LISTEN, backlog query), then one new row from elsewhere.
    await tailOnce(db, writer, 20); // warm-up
    const tails = [];
    for (let i = 0; i < repeats; i++) tails.push(await tailOnce(db, writer, 20));
    // What a new connection alone costs (TCP + SCRAM auth), since every tail start pays it.
    const connects: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const c = new pg.Client({ connectionString: db.url });
      const t = await timed(() => c.connect());
      connects.push(t.ms);
      await c.end();
    }
    const backlogMed = median(tails.map((t) => t.backlogMs));
    const firstMed = median(tails.map((t) => t.firstRowMs));
    results.push({
      name: 'audit volume: tail catching up',
      params: { rows, backlog: 20 },
      figures: {
        backlog_rows: tails[0]?.backlogRows ?? 0,
        backlog_median_ms: round(backlogMed),
        backlog_max_ms: round(Math.max(...tails.map((t) => t.backlogMs))),
        connect_median_ms: round(median(connects)),
        new_row_median_ms: round(firstMed),
        new_row_max_ms: round(Math.max(...tails.map((t) => t.firstRowMs))),
        new_row_after_commit_median_ms: round(median(tails.map((t) => t.afterCommitMs))),
        target_ms: targetMs,
        verdict: backlogMed <= targetMs && firstMed <= targetMs ? 'ok' : 'MISS',
      },
      notes: [
        'backlog = from tailAudit() to the 20th row: new connection + LISTEN + clock query + backlog query',
        'connect = a bare pg connect (TCP + SCRAM-SHA-256 auth), which every tail start pays',
        'new row = from sending the INSERT on another connection to onRow (commit → NOTIFY → fetch by id)',
      ],
    });
    return results;
  } finally {
    await writer.end().catch(() => undefined);
    await db.close();
  }
}

if (isMain(import.meta.url)) {
  const f = parseFlags(process.argv.slice(2));
  const opts: AuditVolumeOptions = {};
  if (f.rows) opts.rows = Number(f.rows.replace(/_/g, ''));
  if (f.repeats) opts.repeats = Number(f.repeats);
  if (f.days) opts.days = Number(f.days);
  printResults(await runAuditVolume(opts));
}
