// The operator's questions at audit-log scale: generate N realistic audit rows (30 days, ~50 agents, ~5,000 runs,
// several tools, ~8% denied, refunds with a long tail) in one INSERT … SELECT, then time every operator query an
// audit_log index exists for (and the index it used), `watchAudit` (what `leash audit tail -f` runs) starting,
// picking up a new row and a settle, and 16 concurrent durable audit inserts. Target: ≤ 20 ms per query.
//   node dist/bench/audit-volume.js [--rows 1000000] [--repeats 5]
import pg from 'pg';
import type { CompiledQuery } from 'kysely';
import { auditQuery, queryAudit, type AuditFilter } from '../src/audit/query.js';
import { pollQuery, watchAudit, type AuditEvent } from '../src/audit/watch.js';
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
  /** Seconds per insert-throughput run (default 5). */
  insertSeconds?: number;
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

/** User triggers on audit_log (schemas before 2026-11-23-0006 had the per-row NOTIFY one). */
async function auditTriggers(pool: pg.Pool | pg.Client): Promise<string[]> {
  const r = await pool.query<{ tgname: string }>(
    `select tgname from pg_trigger where tgrelid = 'audit_log'::regclass and not tgisinternal order by 1`,
  );
  return r.rows.map((x) => x.tgname);
}

/**
 * Appends `rows` generated audit rows spread over `days` from `start`, in one INSERT … SELECT, with any
 * trigger off meanwhile (nobody is tailing a bulk load).
 */
export async function generateAuditRows(
  pool: pg.Pool,
  o: { rows: number; start: Date; days: number; agents: number; runs: number },
): Promise<void> {
  const triggers = await auditTriggers(pool);
  for (const t of triggers) await pool.query(`alter table audit_log disable trigger ${t}`);
  try {
    await pool.query(generateSql(o.rows, o.days * 86_400, o.agents, o.runs), [o.start]);
  } finally {
    for (const t of triggers) await pool.query(`alter table audit_log enable trigger ${t}`);
  }
}

/** An operator query: through queryAudit (a filter), or raw SQL where the question lives in SQL. */
interface Question {
  name: string;
  /** Which index should answer it, `a|b` when either will do (the EXPLAIN shows which one did). */
  serves: string;
  filter?: AuditFilter;
  /** A query built elsewhere (the tail's poll), compiled as is. */
  query?: { compile(): CompiledQuery };
  sql?: { text: string; values: unknown[] };
}

interface Explained {
  top: string;
  scan: string;
  buffers: string;
  execMs: number;
  planningMs: number;
}

function compiled(db: BenchDatabase, q: Question): { text: string; values: unknown[] } {
  if (q.sql) return q.sql;
  const c = (q.query ?? auditQuery(db.handle.db, q.filter ?? {})).compile();
  return { text: c.sql, values: [...c.parameters] };
}

async function explain(pool: pg.Pool, db: BenchDatabase, q: Question): Promise<Explained> {
  const c = compiled(db, q);
  const r = await pool.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers) ${c.text}`, c.values);
  const lines = r.rows.map((x) => x['QUERY PLAN']);
  const find = (re: RegExp) => lines.find((l) => re.test(l))?.trim() ?? '';
  const ms = (re: RegExp) => Number(/([\d.]+) ms/.exec(find(re))?.[1] ?? NaN);
  return {
    top: lines[0]?.trim() ?? '',
    scan: lines
      .filter((l) => /Scan/.test(l))
      .map((l) => l.trim())
      .join(' / '),
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

/** Resolves when `check` holds, polled every 1 ms; rejects after `timeoutMs`. */
async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

interface TailRun {
  /** watchAudit() called → the backlog's last row reported. */
  backlogMs: number;
  /** INSERT sent on another connection → the row reported. */
  newRowMs: number;
  /** That INSERT's commit returned → the row reported. */
  afterCommitMs: number;
  /** The settling UPDATE's commit returned → the row reported again with its outcome. */
  settleMs: number;
}

/** One `watchAudit` start (what `leash audit tail -f` runs), then one row written and settled elsewhere. */
async function tailOnce(db: BenchDatabase, writer: pg.Client, backlog: number): Promise<TailRun> {
  const events: { e: AuditEvent; at: number }[] = [];
  const started = performance.now();
  const watch = watchAudit(db.handle.db, {}, (e) => events.push({ e, at: performance.now() }), { backlog });
  try {
    await watch.ready;
    const backlogMs = (events.at(-1)?.at ?? NaN) - started;
    // Let a poll or two go by, so the row lands at a random point of the 100 ms cycle.
    await new Promise((r) => setTimeout(r, 100 + Math.random() * 100));
    const id = uuidv7();
    const insertAt = performance.now();
    await writer.query(
      `insert into audit_log (id, key_id, agent, run_id, policy, policy_version, tool, vendor, operation,
         decision, outcome, reserved_micros, cost_micros, cost_status, amount, currency, request, usd_micros)
       values ($1, 'kbenchtail00', 'agent-07', 'run-tail', 'support-refunds', 1, 'issue_refund', 'stripe',
         'POST /v1/refunds', 'allowed', 'pending', 300000, 0, 'estimated', 30, 'usd', '{"amount":30}', 300000)`,
      [id],
    );
    const committedAt = performance.now();
    const seen = (kind: AuditEvent['kind']) => events.find((x) => x.e.kind === kind && x.e.row.id === id);
    await until(() => seen('row') !== undefined, 10_000, 'the new row');
    const gotAt = seen('row')?.at ?? NaN;
    await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
    await writer.query(
      `update audit_log set outcome = 'succeeded', cost_micros = 300000, reserved_micros = 0,
         cost_status = 'settled', settled_at = clock_timestamp(), vendor_object_id = 're_' || $2 where id = $1`,
      [id, id.replace(/-/g, '')],
    );
    const settledAt = performance.now();
    await until(() => seen('settle') !== undefined, 10_000, 'the settle');
    return {
      backlogMs,
      newRowMs: gotAt - insertAt,
      afterCommitMs: gotAt - committedAt,
      settleMs: (seen('settle')?.at ?? NaN) - settledAt,
    };
  } finally {
    await watch.stop();
  }
}

/**
 * `writers` connections each inserting audit rows (one durable commit per row, as admission does) for
 * `seconds`: rows per second. Measures what the insert path costs: the indexes and any trigger.
 */
async function insertThroughput(url: string, writers: number, seconds: number): Promise<number> {
  const clients = await Promise.all(
    Array.from({ length: writers }, async () => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      return c;
    }),
  );
  let stopAt = 0;
  let counting = false;
  let n = 0;
  const loop = async (c: pg.Client, w: number) => {
    for (let i = 0; performance.now() < stopAt; i++) {
      await c.query(
        `insert into audit_log (id, key_id, agent, run_id, policy, policy_version, tool, vendor, operation,
           decision, outcome, reserved_micros, cost_micros, cost_status, request, args_hash, budget, usd_micros)
         values ($1, $2, $3, $4, 'notifications', 1, 'send_sms', 'twilio', 'POST /Messages.json',
           'allowed', 'pending', 8300, 0, 'estimated', '{"to":"+15550001111","body":"hi"}', $5, '[]', 8300)`,
        [uuidv7(), `kthroughput${w}`, `agent-${w % 50}`, `run-tp-${w}`, `h${w}-${i % 7}`],
      );
      if (counting) n++;
    }
  };
  try {
    stopAt = performance.now() + 500 + seconds * 1000;
    const runs = clients.map((c, w) => loop(c, w));
    await new Promise((r) => setTimeout(r, 500)); // warm-up
    counting = true;
    const t0 = performance.now();
    await Promise.all(runs);
    return n / ((performance.now() - t0) / 1000);
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

/** The audit indexes as they stand, with their size. */
async function indexList(pool: pg.Pool): Promise<string[]> {
  const r = await pool.query<{ name: string; def: string; size: string }>(
    `select c.relname as name, pg_get_indexdef(i.indexrelid) as def,
            pg_size_pretty(pg_relation_size(i.indexrelid)) as size
       from pg_index i join pg_class c on c.oid = i.indexrelid
      where i.indrelid in ('audit_log'::regclass, to_regclass('audit_unsettled'))
      order by i.indrelid, c.relname`,
  );
  return r.rows.map((x) => `${x.name} (${x.size}): ${x.def.replace(/^CREATE (UNIQUE )?INDEX \S+ ON /, '')}`);
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
    // A key and arguments that exist, for the loop guard's count (admission runs it on every guarded call).
    const probe = await pool.query<{ key_id: string; args_hash: string; ts: Date }>(
      `select key_id, args_hash, ts from audit_log
        where decision = 'allowed' and ts >= $1 and ts < $2 order by ts limit 1`,
      [day, nextDay],
    );
    const loop = probe.rows[0];
    const questions: Question[] = [
      { name: "one run's calls", serves: 'audit_by_run', filter: { run, limit: 1000 } },
      {
        name: "one agent's calls in one day",
        serves: 'audit_by_agent_ts',
        filter: { agent, since: day, until: nextDay, limit: 1000 },
      },
      {
        name: "one agent's denied calls in one day",
        serves: 'audit_denied_ts|audit_by_agent_ts',
        filter: { agent, decision: 'denied', since: day, until: nextDay, limit: 1000 },
      },
      {
        name: 'denied calls in one day',
        serves: 'audit_denied_ts',
        filter: { decision: 'denied', since: day, until: nextDay, limit: 1000 },
      },
      {
        name: 'newest 100 denied calls',
        serves: 'audit_denied_ts',
        filter: { decision: 'denied', limit: 100 },
      },
      {
        name: 'refunds over $100 in one day',
        serves: 'audit_tool_ts_usd_v2',
        filter: { tool: 'issue_refund', minUsdMicros: 100_000_000, since: day, until: nextDay, limit: 1000 },
      },
      { name: 'tail backlog (newest 20)', serves: 'audit_by_ts', filter: { order: 'desc', limit: 20 } },
      {
        name: 'tail poll (rows in the last 2 s)',
        serves: 'audit_by_ts',
        query: pollQuery(db.handle.db, {}, new Date(Date.now() - 2_000), []),
      },
      {
        name: 'loop guard count (key + args within 10 min)',
        serves: 'audit_loop',
        sql: {
          text: `select count(*)::int as n from audit_log a
                  where a.key_id = $1 and a.args_hash = $2 and a.decision = 'allowed'
                    and a.ts > $3::timestamptz - interval '10 minutes'`,
          values: [loop?.key_id ?? '', loop?.args_hash ?? '', loop?.ts ?? day],
        },
      },
      {
        name: "one key's calls",
        serves: 'audit_loop',
        filter: { keyId: loop?.key_id ?? '', limit: 1000 },
      },
    ];

    const results: BenchResult[] = [];
    const loadNotes = [
      `generated ${size.rows[0]?.n ?? '?'} rows in ${round(gen.ms / 1000, 1)} s (one INSERT … SELECT, triggers off), ANALYZE ${round(analyze.ms)} ms`,
      `table ${size.rows[0]?.heap ?? '?'}, indexes ${size.rows[0]?.indexes ?? '?'}`,
      `denied ${round((st?.denied ?? 0) * 100, 1)}%, refunds ${st?.refunds ?? '?'}, refunds ≥ $100 ${st?.refunds_over_100 ?? '?'}`,
      `triggers on audit_log: ${(await auditTriggers(pool)).join(', ') || 'none'}`,
      ...(await indexList(pool)),
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
      const c = compiled(db, q);
      const runOnce = async () => (await pool.query(c.text, c.values)).rows.length;
      // Through Kysely as `leash audit query` runs it, when it is a filter; raw SQL otherwise.
      const exec = q.filter ? async () => (await queryAudit(db.handle.db, q.filter ?? {})).length : runOnce;
      await exec(); // warm-up
      const times: number[] = [];
      let n = 0;
      for (let i = 0; i < repeats; i++) {
        const t = await timed(exec);
        times.push(t.ms);
        n = t.value;
      }
      const plan = await explain(pool, db, q);
      const med = median(times);
      results.push({
        name: `audit volume: ${q.name}`,
        params: {
          rows,
          serves: q.serves,
          filter: Object.fromEntries(
            Object.entries(q.filter ?? {}).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v]),
          ),
        },
        figures: {
          rows_returned: n,
          median_ms: round(med),
          min_ms: round(Math.min(...times)),
          max_ms: round(Math.max(...times)),
          explain_exec_ms: plan.execMs,
          explain_planning_ms: plan.planningMs,
          index_used: q.serves.split('|').find((i) => plan.scan.includes(` ${i} `)) ?? `OTHER: ${plan.scan}`,
          target_ms: targetMs,
          verdict: med <= targetMs ? 'ok' : 'MISS',
        },
        notes: [`plan: ${plan.top}`, `scan: ${plan.scan}`, plan.buffers].filter(Boolean),
      });
    }

    // `leash audit tail -f`: a fresh watcher (backlog), then one row inserted and settled on another connection.
    await tailOnce(db, writer, 20); // warm-up
    const tails: TailRun[] = [];
    for (let i = 0; i < Math.max(repeats, 10); i++) tails.push(await tailOnce(db, writer, 20));
    const col = (k: keyof TailRun) => tails.map((t) => t[k]);
    results.push({
      name: 'audit volume: tail (watchAudit, 100 ms polls)',
      params: { rows, backlog: 20, runs: tails.length },
      figures: {
        backlog_median_ms: round(median(col('backlogMs'))),
        new_row_median_ms: round(median(col('newRowMs'))),
        new_row_max_ms: round(Math.max(...col('newRowMs'))),
        new_row_after_commit_median_ms: round(median(col('afterCommitMs'))),
        settle_after_commit_median_ms: round(median(col('settleMs'))),
        settle_after_commit_max_ms: round(Math.max(...col('settleMs'))),
        target_new_row_ms: 250,
        verdict: Math.max(...col('newRowMs')) <= 250 ? 'ok' : 'MISS',
      },
      notes: [
        'backlog = from watchAudit() to its 20th row: clock read + lookback window + backlog query on a warm pool',
        'new row = from sending the INSERT on another connection to the watcher reporting it (polls every 100 ms)',
        'settle = from the settling UPDATE committing to the watcher reporting the row again',
      ],
    });

    // Insert throughput: 16 connections, one durable commit per row, on the loaded table (indexes + triggers).
    const writers = 16;
    const seconds = o.insertSeconds ?? 5;
    const asIs = await insertThroughput(db.url, writers, seconds);
    const figures: Record<string, number | string> = { rows_per_s: round(asIs, 0) };
    const notes = [`${writers} connections, ${seconds} s, autocommit INSERTs (synchronous_commit on)`];
    if (!(await auditTriggers(pool)).length) {
      // For comparison on the same table: the per-row NOTIFY trigger schemas before 0006 had.
      await pool.query(`create function bench_audit_notify() returns trigger language plpgsql as $$
          begin perform pg_notify('leash_audit', new.id::text); return null; end $$;
        create trigger bench_audit_notify after insert on audit_log
          for each row execute function bench_audit_notify()`);
      try {
        figures.with_notify_trigger_rows_per_s = round(await insertThroughput(db.url, writers, seconds), 0);
      } finally {
        await pool.query('drop trigger bench_audit_notify on audit_log; drop function bench_audit_notify()');
      }
      figures.again_without_trigger_rows_per_s = round(await insertThroughput(db.url, writers, seconds), 0);
      notes.push('with_notify_trigger = the same run with the old per-row pg_notify trigger put back');
    }
    results.push({
      name: 'audit volume: 16 concurrent audit inserts',
      params: { rows, writers, seconds },
      figures,
      notes,
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
