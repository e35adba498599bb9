// Scale: many agents, slow vendors, several `leash serve` replicas on one Postgres, against a bare MCP server with
// the same vendors. Each agent holds its own vault key and calls at its own pace (a think time between calls) over
// MCP Streamable HTTP, or through the REST door with stripe-node; 10 policies, one of them hot (half the agents),
// whose daily cap is reached during the run; the keys of a runaway run are revoked mid-run through the admin API.
// The vendor fakes answer after a long-tailed delay (log-normal, 150 ms median), the same for leash and bare.
//
// Per configuration: calls/s, added p50/p99 over the vendor's own delay, leash ÷ bare, Postgres connections and CPU
// per call, RSS per replica and per call in flight (every eligible agent's call held at the fakes at once), the hot
// cap's overshoot and the calls admitted after the revoke returned (both must be 0).
//
//   node dist/bench/scale.js [--full] [--replicas 1,2,4] [--agents 200] [--period-ms 1500] [--calls 3000]
//                            [--median-ms 150] [--pgbouncer] [--no-bare] [--json]
// Replicas and the bare servers (bench/scale-servers.ts) are separate processes run from dist/: `npm run build` first.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { sql } from 'kysely';
import pg from 'pg';
import Stripe from 'stripe';
import { loadConfig } from '../src/config/config.js';
import { openDatabase, type DbHandle } from '../src/db/database.js';
import { mintKey } from '../src/keys/vault-keys.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { validatePolicy } from '../src/policy/compile.js';
import { applyPolicy } from '../src/policies/store.js';
import { catalog, catalogVendors } from '../tools/index.js';
import { startPgBouncer, pgbouncerMissing, type PgBouncer } from './pgbouncer.js';
import { ADMIN_TOKEN, callTool, mcpClient, startCluster, type CallOutcome } from './cluster.js';
import {
  random,
  startBares,
  startVendors,
  VENDOR_ENV,
  type Server,
  type Servers,
  type Vendors,
} from './scale-servers.js';
import { BENCH_CUSTOMER, EMAIL_FROM, SMS_FROM } from './serve-both.js';
import {
  formatTable,
  isMain,
  measureLoop,
  percentile,
  processCpuMs,
  processTreeCpuMs,
  round,
  runMain,
  startDatabase,
  type Figure,
  type Result,
} from './support.js';

export interface ScaleOptions {
  /** Replica counts, one configuration each (default [1, 2, 4]). */
  replicas?: number[];
  /** Agents, each with its own vault key and client (default 200; --full 1,000). */
  agents?: number;
  /** Mean time from one call's start to the agent's next (think time included), ms (default 2,000). */
  periodMs?: number;
  /** Calls measured per configuration (default 2,000). */
  calls?: number;
  /** The vendors' median delay, ms (default 150), and the log-normal shape of its tail (default 0.5). */
  medianMs?: number;
  sigma?: number;
  /** Replicas reach Postgres through PgBouncer in transaction mode (needs the pgbouncer binary). */
  pgbouncer?: boolean;
  /** Also run the bare server at each replica count (default true). */
  bare?: boolean;
  /** A migrated database to run on (a test's); default: startDatabase() (DATABASE_URL, else a new embedded one). */
  databaseUrl?: string;
  /** Stop a configuration that has not met its end conditions after this long (default 10 × its planned time). */
  maxRunMs?: number;
  log?: (line: string) => void;
}

type Door = 'sms' | 'email' | 'refund';

interface Agent {
  i: number;
  door: Door;
  /** On the hot policy (every other agent): half the traffic. */
  hot: boolean;
  /** In the runaway run whose keys are revoked mid-run (a few agents that ignore refusals). */
  runaway: boolean;
  /** 0 is the hot policy, 1..9 the others. */
  policy: number;
}

/** The cost admission reserves per call, micro-USD: Twilio's default price per segment; a 1-cent refund. */
const COST: Record<Door, number> = { sms: 8_300, email: 400, refund: 10_000 };
/** The hot cap fits this share of the hot agents' planned calls, so it is reached well before the end. */
const HOT_CAP_SHARE = 0.4;

/** Agents: every other one on the hot policy; one in five through the REST door (stripe-node refunds). */
export function planAgents(n: number): Agent[] {
  const agents = Array.from({ length: n }, (_, i): Agent => {
    const hot = i % 2 === 0;
    const door: Door = i % 10 === 0 || i % 10 === 5 ? 'refund' : hot || (i >> 1) % 2 === 0 ? 'sms' : 'email';
    return { i, door, hot, runaway: false, policy: hot ? 0 : 1 + ((i >> 1) % 9) };
  });
  // The runaway run: the first odd (not hot) agents, MCP and REST alike, at least 3.
  const runaways = Math.max(3, Math.round(n / 50));
  for (const a of agents.filter((x) => !x.hot).slice(0, runaways)) a.runaway = true;
  return agents;
}

// ---------------------------------------------------------------------------------------------------------
// Postgres

/** Resident set size of a process, KB (Linux /proc); NaN when unknown. */
function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

interface Shared {
  o: Required<Omit<ScaleOptions, 'log' | 'maxRunMs' | 'databaseUrl'>> & { maxRunMs: number | undefined };
  log: (line: string) => void;
  url: string;
  /** What replicas connect to: the database, or PgBouncer in front of it. */
  replicaUrl: string;
  postgresPid: number | undefined;
  handle: DbHandle;
  /** One session sampling pg_stat_activity. */
  probe: pg.Client;
  vendors: Vendors;
  agents: Agent[];
}

/** Ten policies for one leash configuration: `${tag}-p0` is hot, its daily cap sized to be reached mid-run. */
async function applyPolicies(s: Shared, tag: string): Promise<{ names: string[]; hotCapMicros: number }> {
  const hot = s.agents.filter((a) => a.hot);
  const hotShare = hot.length / s.agents.length;
  const meanCost = hot.reduce((sum, a) => sum + COST[a.door], 0) / Math.max(1, hot.length);
  const hotCapMicros = Math.max(
    COST.refund,
    Math.round((HOT_CAP_SHARE * s.o.calls * hotShare * meanCost) / 10_000) * 10_000,
  );
  const names = Array.from({ length: 10 }, (_, p) => `${tag}-p${p}`);
  for (const [p, name] of names.entries()) {
    const doc = validatePolicy(
      {
        name,
        limits: {
          daily_usd: p === 0 ? hotCapMicros / 1e6 : 1_000_000,
          per_key_daily_usd: 100_000,
          hourly_requests: 100_000_000,
        },
        tools: {
          send_sms: { from: SMS_FROM, to_prefixes: ['+1'], max_segments: 3 },
          send_email: { from: EMAIL_FROM, to_domains: ['acme.com'], max_recipients: 5 },
          issue_refund: { max_amount_usd: 50, customers: [BENCH_CUSTOMER] },
        },
        vendors: { stripe: { http: { 'POST /v1/refunds': {} } } },
      },
      ruleSpecs(catalog),
    );
    await applyPolicy(s.handle.db, doc);
  }
  return { names, hotCapMicros };
}

// ---------------------------------------------------------------------------------------------------------
// Agents

/** How an agent reaches its server: an MCP client, or stripe-node. */
type Caller = (seq: number) => Promise<CallOutcome>;

function restCaller(stripe: Stripe, paymentIntent: string): Caller {
  return async () => {
    try {
      await stripe.refunds.create({ payment_intent: paymentIntent, amount: 1 });
      return { ok: true, code: null, structured: undefined };
    } catch (error) {
      // leash answers a refusal in Stripe's error shape with its own code (budget_exceeded, key_revoked, …).
      const e = error as { code?: string; statusCode?: number; message?: string };
      return { ok: false, code: e.code ?? `http_${e.statusCode ?? '?'}`, structured: { message: e.message } };
    }
  };
}

function mcpCaller(client: Client, door: Exclude<Door, 'refund'>, tag: string): Caller {
  return (seq) =>
    door === 'sms'
      ? callTool(client, 'send_sms', {
          to: `+1555${String(1_000_000 + (seq % 9_000_000)).padStart(7, '0')}`,
          body: `scale ${tag} #${seq}: your order has shipped.`,
        })
      : callTool(client, 'send_email', {
          to: ['pat@acme.com'],
          subject: `scale ${tag} #${seq}`,
          text: 'Your refund has been processed.',
        });
}

interface Connected {
  callers: Caller[];
  close(): Promise<void>;
}

/** One client per agent on its server (agent i on server i mod N); REST agents on bare call the vendor itself. */
async function connectAgents(
  s: Shared,
  servers: Server[],
  keys: string[] | undefined,
  tag: string,
): Promise<Connected> {
  const clients: Client[] = [];
  const callers: Caller[] = new Array<Caller>(s.agents.length);
  const loop = await measureLoop({
    concurrency: 16,
    calls: s.agents.length,
    call: async (i) => {
      const a = s.agents[i]!;
      const server = servers[i % servers.length]!;
      const pi = s.vendors.paymentIntents[i % s.vendors.paymentIntents.length]!;
      if (a.door === 'refund') {
        const base = new URL(keys ? server.url : s.vendors.stripe.url);
        const stripe = new Stripe(keys?.[i] ?? VENDOR_ENV.STRIPE_SECRET_KEY, {
          host: base.hostname,
          port: Number(base.port),
          protocol: 'http',
          maxNetworkRetries: 0,
        });
        callers[i] = restCaller(stripe, pi);
        return;
      }
      const client = await mcpClient(`${server.url}/mcp`, keys?.[i] ?? 'bare', `scale-agent-${i}`);
      clients.push(client);
      callers[i] = mcpCaller(client, a.door, tag);
    },
  });
  const close = async () => void (await Promise.allSettled(clients.map((c) => c.close())));
  if (loop.errors) {
    await close();
    throw new Error(`${loop.errors} agents could not connect: ${loop.firstError}`);
  }
  return { callers, close };
}

// ---------------------------------------------------------------------------------------------------------
// One configuration

interface Run {
  kind: 'leash' | 'bare';
  replicas: number;
  figures: Record<string, Figure>;
  notes: string[];
}

interface Sample {
  inFlight: number;
  rss: number[];
  connections: number | undefined;
}

async function runConfig(s: Shared, kind: 'leash' | 'bare', replicas: number): Promise<Run> {
  const tag = `scale-${kind}-r${replicas}-${Date.now().toString(36)}`;
  const notes: string[] = [];
  let servers: Servers | undefined;
  let connected: Connected | undefined;
  let hotCapMicros = 0;
  let policies: string[] = [];
  const keyIds: string[] = [];
  try {
    let keys: string[] | undefined;
    if (kind === 'leash') {
      ({ names: policies, hotCapMicros } = await applyPolicies(s, tag));
      keys = new Array<string>(s.agents.length);
      const minted = await measureLoop({
        concurrency: 8,
        calls: s.agents.length,
        call: async (i) => {
          const a = s.agents[i]!;
          const k = await mintKey(s.handle.db, {
            agent: `${tag}-a${i}`,
            runId: a.runaway ? `${tag}-runaway` : tag,
            policy: policies[a.policy]!,
            expiresAt: new Date(Date.now() + 6 * 3_600_000),
          });
          keys![i] = k.key;
          keyIds[i] = k.id;
        },
      });
      if (minted.errors) throw new Error(`minting keys failed: ${minted.firstError}`);
      const cluster = await startCluster({
        replicas,
        databaseUrl: s.replicaUrl,
        stripe: s.vendors.stripe,
        adminToken: ADMIN_TOKEN,
        env: {
          ...VENDOR_ENV,
          LEASH_TWILIO_BASE_URL: s.vendors.twilio.url,
          LEASH_RESEND_BASE_URL: s.vendors.resend.url,
        },
        readyTimeoutMs: 120_000,
      });
      servers = {
        list: cluster.replicas.map((r) => ({ url: r.url, pid: r.pid })),
        stop: async () => {
          const errors = cluster.replicas.flatMap((r) => r.errors);
          if (errors.length)
            notes.push(`replica error lines: ${errors.length} (first: ${errors[0]?.slice(0, 200)})`);
          await cluster.close();
        },
      };
    } else {
      servers = await startBares(replicas, s.vendors);
    }
    const list = servers.list;
    connected = await connectAgents(s, list, keys, tag);
    const callers = connected.callers;

    // Warm-up, not measured: one call from every agent whose calls are admitted (sockets, JIT, pools).
    const eligible = s.agents.filter((a) => !a.hot && !a.runaway);
    s.vendors.reset(7);
    await Promise.all(eligible.map((a) => callers[a.i]!(-1 - a.i)));

    // The measured phase: every agent at its own pace until the end conditions hold.
    const offered = (s.agents.length * 1000) / s.o.periodMs;
    const plannedMs = (s.o.calls / offered) * 1000;
    const maxRunMs = s.o.maxRunMs ?? Math.max(120_000, 10 * plannedMs);
    const rnd = random(42);
    const admittedLatency: number[] = [];
    const codes = new Map<string, number>();
    let completed = 0;
    let inFlight = 0;
    let seq = 0;
    let capHitAt: number | undefined;
    let revoke: { started: number; returned?: number; revoked?: number; error?: string } | undefined;
    const runawayAfter = new Set<number>();
    let admittedAfterRevoke = 0;
    let sentAfterRevoke = 0;
    let stopReason = '';
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    let isStopped = false;
    const runawayCount = s.agents.filter((a) => a.runaway).length;

    const doRevoke = async () => {
      revoke = { started: performance.now() };
      try {
        const res = await fetch(`${list[0]!.url}/admin/revoke`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ run_id: `${tag}-runaway`, reason: 'scale bench: runaway run' }),
        });
        const body = (await res.json()) as { revoked?: string[] };
        revoke.revoked = body.revoked?.length ?? 0;
        if (!res.ok) revoke.error = `HTTP ${res.status}`;
      } catch (error) {
        revoke.error = error instanceof Error ? error.message : String(error);
      }
      revoke.returned = performance.now();
    };
    const check = (now: number) => {
      if (isStopped) return;
      if (kind === 'leash' && !revoke && completed >= s.o.calls / 2) void doRevoke();
      const leashDone =
        kind === 'bare' ||
        (capHitAt !== undefined && revoke?.returned !== undefined && runawayAfter.size >= runawayCount);
      if (completed >= s.o.calls && leashDone) stopReason = 'done';
      else if (now - started >= maxRunMs) stopReason = `stopped after ${Math.round(maxRunMs / 1000)} s`;
      else return;
      isStopped = true;
      stop();
    };

    const agentLoop = async (a: Agent) => {
      let next = started + rnd() * s.o.periodMs;
      const call = callers[a.i]!;
      while (!isStopped) {
        const wait = next - performance.now();
        if (wait > 0) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([new Promise<void>((r) => (timer = setTimeout(r, wait))), stopped]);
          clearTimeout(timer);
          if (isStopped) return;
        }
        const t0 = performance.now();
        const afterRevoke = a.runaway && revoke?.returned !== undefined;
        inFlight++;
        const r = await call(seq++);
        inFlight--;
        const t1 = performance.now();
        completed++;
        if (r.ok) admittedLatency.push(t1 - t0);
        else codes.set(r.code ?? '?', (codes.get(r.code ?? '?') ?? 0) + 1);
        if (a.hot && r.code === 'budget_exceeded') capHitAt ??= t1 - started;
        if (afterRevoke) {
          sentAfterRevoke++;
          runawayAfter.add(a.i);
          if (r.ok) admittedAfterRevoke++;
        }
        next = Math.max(t0 + s.o.periodMs * (0.5 + rnd()), t1);
        check(t1);
      }
    };

    const samples: Sample[] = [];
    let probing = false;
    const sampler = setInterval(() => {
      const sample: Sample = { inFlight, rss: list.map((x) => rssKb(x.pid)), connections: undefined };
      samples.push(sample);
      if (probing) return;
      probing = true;
      s.probe
        .query<{ n: number }>(
          `select count(*)::int as n from pg_stat_activity
            where datname = current_database() and backend_type = 'client backend' and pid <> pg_backend_pid()`,
        )
        .then((r) => (sample.connections = r.rows[0]?.n))
        .catch(() => undefined)
        .finally(() => (probing = false));
    }, 250);

    const idleRss = list.map((x) => rssKb(x.pid));
    s.vendors.reset(11);
    s.vendors.recording = true;
    const cpu0 = list.map((x) => processCpuMs(x.pid));
    const pg0 = s.postgresPid ? processTreeCpuMs(s.postgresPid) : undefined;
    const self0 = process.cpuUsage();
    const started = performance.now();
    await Promise.all(s.agents.map((a) => agentLoop(a)));
    const wallMs = performance.now() - started;
    const self1 = process.cpuUsage(self0);
    const pg1 = s.postgresPid ? processTreeCpuMs(s.postgresPid) : undefined;
    const cpu1 = list.map((x) => processCpuMs(x.pid));
    clearInterval(sampler);
    s.vendors.recording = false;
    const vendorDelays = s.vendors.delays;

    // Memory per call in flight: one call from every eligible agent, all held at the fakes at once.
    const rssBefore = list.map((x) => rssKb(x.pid));
    const hold = s.vendors.hold(eligible.length);
    const held = Promise.all(eligible.map((a) => callers[a.i]!(-100_000 - a.i)));
    let holdTimer: NodeJS.Timeout | undefined;
    const allHeld = await Promise.race([
      hold.allHeld.then(() => true),
      new Promise<boolean>((r) => (holdTimer = setTimeout(() => r(false), 120_000))),
    ]);
    clearTimeout(holdTimer);
    const rssHeld = list.map((x) => rssKb(x.pid));
    hold.release();
    await held;
    if (!allHeld)
      notes.push('not every held call reached the fakes within 120 s: RSS per call in flight is rough');

    await connected.close();
    connected = undefined;
    await servers.stop(); // replicas flush their settles before they exit
    servers = undefined;

    // Figures
    const sum = (xs: (number | undefined)[]) =>
      xs.every((x) => x !== undefined) ? xs.reduce<number>((t, x) => t + (x ?? 0), 0) : undefined;
    const serverCpu = (() => {
      const a = sum(cpu0);
      const b = sum(cpu1);
      return a !== undefined && b !== undefined ? b - a : undefined;
    })();
    const peakRss = list.map((_, i) => Math.max(...samples.map((x) => x.rss[i] ?? 0), rssHeld[i] ?? 0));
    const connections = samples.flatMap((x) => (x.connections === undefined ? [] : [x.connections]));
    const heldKb = rssHeld.reduce((t, x, i) => t + (x - (rssBefore[i] ?? 0)), 0);
    const f: Record<string, Figure> = {
      agents: s.agents.length,
      offered_calls_per_s: round(offered),
      calls: completed,
      wall_s: round(wallMs / 1000),
      calls_per_s: round((completed * 1000) / wallMs),
      admitted_per_s: round((admittedLatency.length * 1000) / wallMs),
      p50_ms: round(percentile(admittedLatency, 50)),
      p99_ms: round(percentile(admittedLatency, 99)),
      vendor_p50_ms: round(percentile(vendorDelays, 50)),
      vendor_p99_ms: round(percentile(vendorDelays, 99)),
      added_p50_ms: round(percentile(admittedLatency, 50) - percentile(vendorDelays, 50)),
      added_p99_ms: round(percentile(admittedLatency, 99) - percentile(vendorDelays, 99)),
      in_flight_mean: round(samples.reduce((t, x) => t + x.inFlight, 0) / Math.max(1, samples.length)),
      server_cpu_ms_per_call: serverCpu === undefined ? null : round(serverCpu / completed),
      pg_cpu_ms_per_call:
        pg0 !== undefined && pg1 !== undefined && kind === 'leash' ? round((pg1 - pg0) / completed) : null,
      bench_cpu_ms_per_call: round((self1.user + self1.system) / 1000 / completed),
      pg_connections_max: connections.length ? Math.max(...connections) : null,
      pg_connections_mean: connections.length
        ? round(connections.reduce((t, x) => t + x, 0) / connections.length)
        : null,
      rss_idle_mb_per_server: round(idleRss.reduce((t, x) => t + x, 0) / list.length / 1024),
      rss_peak_mb_per_server: round(peakRss.reduce((t, x) => t + x, 0) / list.length / 1024),
      held_calls: eligible.length,
      rss_kb_per_call_in_flight: round(heldKb / Math.max(1, eligible.length)),
      refusals: [...codes].map(([c, n]) => `${c}=${n}`).join(' ') || 'none',
      end: stopReason,
    };
    if (kind === 'leash') {
      const windows = await sql<{ spent: string; reserved: string }>`
        select coalesce(sum(spent_micros), 0)::text as spent, coalesce(sum(reserved_micros), 0)::text as reserved
          from spend_windows where scope = ${`policy:${policies[0]}`} and kind = 'usd_day'`.execute(
        s.handle.db,
      );
      const allowed = await sql<{ usd: string; n: number }>`
        select coalesce(sum(usd_micros), 0)::text as usd, count(*)::int as n from audit_log
         where policy = ${policies[0]} and decision = 'allowed'`.execute(s.handle.db);
      const spent = Number(windows.rows[0]?.spent ?? 0);
      const reserved = Number(windows.rows[0]?.reserved ?? 0);
      const allowedUsd = Number(allowed.rows[0]?.usd ?? 0);
      const runawayIds = s.agents.filter((a) => a.runaway).map((a) => keyIds[a.i]!);
      const late = await sql<{ n: number }>`
        select count(*)::int as n from audit_log a join vault_keys k on k.id = a.key_id
         where k.id = any(${runawayIds}) and a.decision = 'allowed' and a.ts > k.revoked_at`.execute(
        s.handle.db,
      );
      Object.assign(f, {
        hot_cap_usd: hotCapMicros / 1e6,
        hot_spent_usd: spent / 1e6,
        hot_reserved_usd: reserved / 1e6,
        hot_allowed_calls: allowed.rows[0]?.n ?? 0,
        hot_cap_reached_s: capHitAt === undefined ? null : round(capHitAt / 1000),
        overshoot_micros: Math.max(0, spent + reserved - hotCapMicros, allowedUsd - hotCapMicros),
        revoked_keys: revoke?.revoked ?? 0,
        revoke_at_s: revoke ? round((revoke.started - started) / 1000) : null,
        revoke_ms: revoke?.returned !== undefined ? round(revoke.returned - revoke.started) : null,
        runaway_calls_after_revoke: sentAfterRevoke,
        admitted_after_revoke: admittedAfterRevoke,
        db_allowed_after_revoked_at: late.rows[0]?.n ?? 0,
      });
      if (revoke?.error) notes.push(`revoke failed: ${revoke.error}`);
      if (capHitAt === undefined) notes.push('the hot cap was never reached');
    }
    return { kind, replicas, figures: f, notes };
  } finally {
    await connected?.close();
    await servers?.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The bench

const SHORT = { agents: 200, periodMs: 2_000, calls: 2_000 };
/** The --full sizes: 1,000 agents at 200 calls/s offered. */
export const SCALE_FULL = { agents: 1_000, periodMs: 5_000, calls: 12_000 };

export async function runScale(o: ScaleOptions = {}): Promise<Result[]> {
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const opts: Shared['o'] = {
    replicas: o.replicas ?? [1, 2, 4],
    agents: o.agents ?? SHORT.agents,
    periodMs: o.periodMs ?? SHORT.periodMs,
    calls: o.calls ?? SHORT.calls,
    medianMs: o.medianMs ?? 150,
    sigma: o.sigma ?? 0.5,
    pgbouncer: o.pgbouncer ?? false,
    bare: o.bare ?? true,
    maxRunMs: o.maxRunMs,
  };
  if (opts.pgbouncer) {
    const missing = pgbouncerMissing();
    if (missing) throw new Error(`--pgbouncer: ${missing}`);
  }
  const db = o.databaseUrl
    ? { url: o.databaseUrl, postgresPid: undefined, cleanup: async () => {} }
    : await startDatabase();
  let handle: DbHandle | undefined;
  let probe: pg.Client | undefined;
  let bouncer: PgBouncer | undefined;
  let vendors: Vendors | undefined;
  const load = { before: readFileSync('/proc/loadavg', 'utf8').trim(), after: '' };
  try {
    const config = loadConfig(
      { DATABASE_URL: db.url, LEASH_HOME: '/nonexistent/leash-bench', LEASH_LOG: 'silent' },
      catalogVendors,
    );
    handle = await openDatabase(config, { poolMax: 8 });
    probe = new pg.Client({ connectionString: db.url });
    await probe.connect();
    // Transaction pooling: at most 8 server connections however many replicas and pools there are.
    if (opts.pgbouncer) bouncer = await startPgBouncer(db.url, { poolSize: 8 });
    vendors = await startVendors(opts.medianMs, opts.sigma);
    const s: Shared = {
      o: opts,
      log,
      url: db.url,
      replicaUrl: bouncer?.url ?? db.url,
      postgresPid: db.postgresPid,
      handle,
      probe,
      vendors,
      agents: planAgents(opts.agents),
    };
    const results: Result[] = [];
    for (const replicas of opts.replicas) {
      let bare: Run | undefined;
      if (opts.bare) {
        log(`scale: bare x${replicas}, ${opts.agents} agents, ${opts.calls} calls`);
        bare = await runConfig(s, 'bare', replicas);
        results.push(resultOf(bare, opts, undefined));
      }
      log(
        `scale: leash x${replicas}${bouncer ? ' via PgBouncer' : ''}, ${opts.agents} agents, ${opts.calls} calls`,
      );
      const leash = await runConfig(s, 'leash', replicas);
      results.push(resultOf(leash, opts, bare, bouncer?.version));
    }
    load.after = readFileSync('/proc/loadavg', 'utf8').trim();
    for (const r of results) r.notes.push(`/proc/loadavg before: ${load.before}; after: ${load.after}`);
    return results;
  } finally {
    await vendors?.close();
    await probe?.end().catch(() => undefined);
    await handle?.close();
    await bouncer?.stop();
    await db.cleanup();
  }
}

function resultOf(run: Run, o: Shared['o'], bare: Run | undefined, pgbouncer?: string): Result {
  const f = { ...run.figures };
  if (bare) {
    const b = bare.figures;
    const num = (x: Figure | undefined) => (typeof x === 'number' ? x : Number.NaN);
    f.ratio_vs_bare = round(num(f.calls_per_s) / num(b.calls_per_s));
    f.admitted_ratio_vs_bare = round(num(f.admitted_per_s) / num(b.admitted_per_s));
    f.delta_p50_vs_bare_ms = round(num(f.p50_ms) - num(b.p50_ms));
    f.delta_p99_vs_bare_ms = round(num(f.p99_ms) - num(b.p99_ms));
  }
  return {
    name: `scale.${run.kind}.r${run.replicas}${pgbouncer ? '.pgbouncer' : ''}`,
    params: {
      server: run.kind,
      replicas: run.replicas,
      agents: o.agents,
      period_ms: o.periodMs,
      calls: o.calls,
      vendor_median_ms: o.medianMs,
      vendor_sigma: o.sigma,
      pgbouncer: pgbouncer ?? false,
    },
    figures: f,
    notes: [
      ...run.notes,
      'added_p50/p99: the admitted calls’ latency at the client minus the same percentile of the delays the fakes drew in that run (the vendor’s own latency); calls/s counts refusals too (the hot policy’s after its cap, the revoked run’s).',
      'rss_kb_per_call_in_flight: the servers’ RSS with one call from every eligible agent held at the fakes, minus their RSS just before, per held call.',
    ],
  };
}

/** One row per configuration, readable at 80 columns. */
export function scaleTable(results: readonly Result[]): string {
  return formatTable(
    results.map((r) => {
      const f = r.figures;
      const whole = (k: string) => (typeof f[k] === 'number' ? Math.round(f[k]) : undefined);
      return {
        config: `${String(r.params.server)} x${String(r.params.replicas)}`,
        'calls/s': whole('calls_per_s'),
        '÷bare': typeof f.ratio_vs_bare === 'number' ? f.ratio_vs_bare : undefined,
        '+p50': whole('added_p50_ms'),
        '+p99': whole('added_p99_ms'),
        conn: whole('pg_connections_max'),
        'pg ms': typeof f.pg_cpu_ms_per_call === 'number' ? f.pg_cpu_ms_per_call : undefined,
        'RSS MB': whole('rss_peak_mb_per_server'),
        'KB/call': whole('rss_kb_per_call_in_flight'),
        over: whole('overshoot_micros'),
        late: whole('admitted_after_revoke'),
      };
    }),
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      full: { type: 'boolean' },
      replicas: { type: 'string' },
      agents: { type: 'string' },
      'period-ms': { type: 'string' },
      calls: { type: 'string' },
      'median-ms': { type: 'string' },
      pgbouncer: { type: 'boolean' },
      'no-bare': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(
      'Usage: node dist/bench/scale.js [--full] [--replicas 1,2,4] [--agents N] [--period-ms MS] [--calls N]\n' +
        '                                [--median-ms MS] [--pgbouncer] [--no-bare] [--json]\n\n' +
        `Short by default (${SHORT.agents} agents, ${SHORT.calls} calls per configuration); --full: ${SCALE_FULL.agents} agents,\n` +
        `${SCALE_FULL.calls} calls. Needs \`npm run build\` (replicas and bare servers run from dist/).\n`,
    );
    return;
  }
  const int = (v: string | undefined, name: string, max: number): number | undefined => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!Number.isInteger(x) || x <= 0 || x > max)
      throw new Error(`--${name} must be a whole number from 1 to ${max}, got '${v.slice(0, 20)}'`);
    return x;
  };
  const size = values.full ? SCALE_FULL : SHORT;
  const replicas = values.replicas?.split(',').map((x) => int(x.trim(), 'replicas', 16) ?? 1);
  const results = await runScale({
    agents: int(values.agents, 'agents', 5_000) ?? size.agents,
    periodMs: int(values['period-ms'], 'period-ms', 600_000) ?? size.periodMs,
    calls: int(values.calls, 'calls', 1_000_000) ?? size.calls,
    ...(replicas && { replicas }),
    medianMs: int(values['median-ms'], 'median-ms', 10_000) ?? 150,
    pgbouncer: Boolean(values.pgbouncer),
    bare: !values['no-bare'],
  });
  if (values.json) {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
    return;
  }
  process.stdout.write(scaleTable(results));
  process.stdout.write(
    '\n+p50/+p99: ms over the vendor’s own delay. conn: Postgres connections (max,\n' +
      'the bench’s own included). pg ms: Postgres CPU per call. RSS MB: peak per server.\n' +
      'KB/call: RSS per call in flight. over: hot-cap overshoot (micro-USD). late: calls\n' +
      'admitted after the revoke returned.\n',
  );
}

if (isMain(import.meta.url)) runMain(main);
