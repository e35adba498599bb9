// What leash costs per call over a bare MCP server doing the same vendor call: per-call latency
// (p50/p95/p99) and calls/s at several concurrencies, leash and bare measured in alternating chunks.
//
//   node dist/bench/overhead.js --calls 400 --concurrency 1,16,64 [--rounds 4] [--json]
//
// Servers (leash + bare + fake vendors) run in a child process (dist/bench/serve-both.js); the MCP clients
// (one per worker, Streamable HTTP) run here, so client CPU stays off the servers' event loop.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { ServeBothReady } from './serve-both.js';
import {
  benchArgs,
  isMain,
  measureLoop,
  printNotes,
  printTable,
  processCpuMs,
  processTreeCpuMs,
  round,
  runMain,
  startDatabase,
  summarize,
  type Figure,
  type Result,
} from './support.js';

export interface OverheadOptions {
  /** Measured calls per server for each tool and concurrency. */
  calls: number;
  /** Default [1, 16, 64]. */
  concurrencies?: number[];
  /** Alternating chunks per server (leash, bare, bare, leash, …). Default 4. */
  rounds?: number;
  /** Concurrency of the separate issue_refund measurement; 0 skips it. Default 16. */
  refundConcurrency?: number;
  /**
   * Concurrencies at which send_sms/send_email also run against the floor: the bare server writing one audit row
   * durably before the vendor call (`bare_audited`). Default [1]; `--floor 1,16` adds 16. Not by default at 16: the
   * floor writes as many audit rows as leash into the same database, and in three alternating pairs running it there
   * raised leash's Postgres CPU per call at c=16 from 0.41 to 0.54 ms (BENCHMARKS.md §12).
   */
  floorConcurrencies?: number[];
  /** False: run leash under the same policy without any cap (a diagnostic for hot budget rows). Default true. */
  caps?: boolean;
  /** Write V8 CPU profiles of the server process here (node --cpu-prof). */
  profileDir?: string;
  /** Progress lines (default: to stderr). */
  log?: (line: string) => void;
}

type Args = Record<string, unknown>;

interface Target {
  /** `leash`, `bare`, `bare_lookup` */
  label: string;
  url: string;
  headers: Record<string, string>;
  tool: string;
  args: (seq: number) => Args;
}

interface Measured {
  label: string;
  latencies: number[];
  wallMs: number;
  calls: number;
  serverCpuMs: number | undefined;
  dbCpuMs: number | undefined;
  clientCpuMs: number;
}

/** Unmeasured calls per server before measuring (JIT, pools, keep-alive sockets). */
const WARMUP_CALLS = 50;

const SERVE_BOTH = fileURLToPath(new URL('./serve-both.js', import.meta.url));

// ---------------------------------------------------------------------------------------------------------
// The server child process

interface Servers {
  ready: ServeBothReady;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startServers(
  databaseUrl: string,
  profileDir: string | undefined,
  caps: boolean,
): Promise<Servers> {
  const args = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, SERVE_BOTH] : [SERVE_BOTH];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, DATABASE_URL: databaseUrl, LEASH_BENCH_CAPS: caps ? '1' : '0' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<ServeBothReady>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('serve-both did not start within 60 s')), 60_000);
    const lines = createInterface({ input: child.stdout });
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line) as ServeBothReady);
      } catch {
        reject(new Error(`serve-both printed something other than its JSON line: ${line.slice(0, 200)}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve-both exited (${code}) before it was ready`));
    });
    child.once('error', reject);
  }).catch(async (error: unknown) => {
    child.kill('SIGKILL');
    await exited;
    throw error;
  });
  return {
    ready,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Clients and the alternating comparison

async function connect(t: Target): Promise<Client> {
  const client = new Client({ name: 'leash-bench', version: '0.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${t.url}/mcp`), { requestInit: { headers: t.headers } }),
  );
  return client;
}

function checkResult(label: string, r: unknown): void {
  const result = r as CallToolResult;
  if (result.isError) {
    const first = result.content?.[0];
    throw new Error(`${label}: ${first?.type === 'text' ? first.text : JSON.stringify(result)}`);
  }
}

interface CompareOptions {
  concurrency: number;
  calls: number;
  rounds: number;
  targets: Target[];
  serverPid: number;
  postgresPid: number | undefined;
  log: (line: string) => void;
}

/**
 * Runs `calls` calls against each target with `concurrency` clients each, in `rounds` chunks per target whose
 * order flips every round (A B, B A, A B, …) so drift and noise land on every target alike.
 */
async function compare(o: CompareOptions): Promise<Measured[]> {
  const clients = new Map<string, Client[]>();
  try {
    for (const t of o.targets) {
      clients.set(t.label, await Promise.all(Array.from({ length: o.concurrency }, () => connect(t))));
    }
    let seq = 0;
    const callOn = (t: Target) => async (_i: number, worker: number) => {
      const client = clients.get(t.label)?.[worker];
      if (!client) throw new Error(`no client for ${t.label} worker ${worker}`);
      checkResult(t.label, await client.callTool({ name: t.tool, arguments: t.args(seq++) }));
    };

    // Warm-up (not measured): JIT, connection pools, keep-alive sockets on both sides.
    const warmup = Math.max(WARMUP_CALLS, 2 * o.concurrency);
    for (const t of o.targets) {
      const w = await measureLoop({ concurrency: o.concurrency, calls: warmup, call: callOn(t) });
      if (w.errors) throw new Error(`warm-up of ${t.label} ${t.tool} failed: ${w.firstError}`);
    }

    const measured = new Map<string, Measured>(
      o.targets.map((t) => [
        t.label,
        { label: t.label, latencies: [], wallMs: 0, calls: 0, serverCpuMs: 0, dbCpuMs: 0, clientCpuMs: 0 },
      ]),
    );
    const chunk = Math.ceil(o.calls / o.rounds);
    for (let r = 0; r < o.rounds; r++) {
      const order = r % 2 === 0 ? o.targets : [...o.targets].reverse();
      for (const t of order) {
        const m = measured.get(t.label)!;
        const calls = Math.min(chunk, o.calls - m.calls);
        if (calls <= 0) continue;
        const server0 = processCpuMs(o.serverPid);
        const db0 = o.postgresPid ? processTreeCpuMs(o.postgresPid) : undefined;
        const client0 = process.cpuUsage();
        const loop = await measureLoop({ concurrency: o.concurrency, calls, call: callOn(t) });
        const client = process.cpuUsage(client0);
        const server1 = processCpuMs(o.serverPid);
        const db1 = o.postgresPid ? processTreeCpuMs(o.postgresPid) : undefined;
        if (loop.errors)
          throw new Error(`${loop.errors} of ${calls} ${t.label} ${t.tool} calls failed: ${loop.firstError}`);
        m.latencies.push(...loop.latencies);
        m.wallMs += loop.wallMs;
        m.calls += calls;
        m.clientCpuMs += (client.user + client.system) / 1000;
        m.serverCpuMs =
          m.serverCpuMs !== undefined && server0 !== undefined && server1 !== undefined
            ? m.serverCpuMs + server1 - server0
            : undefined;
        m.dbCpuMs =
          m.dbCpuMs !== undefined && db0 !== undefined && db1 !== undefined
            ? m.dbCpuMs + db1 - db0
            : undefined;
      }
    }
    const results = [...measured.values()];
    for (const m of results) {
      const s = summarize(m.latencies);
      o.log(
        `  ${m.label.padEnd(12)} ${o.targets[0]?.tool ?? ''} c=${o.concurrency}: p50 ${round(s.p50)} ms, p99 ${round(s.p99)} ms, ${round((m.calls * 1000) / m.wallMs)} calls/s`,
      );
    }
    return results;
  } finally {
    await Promise.allSettled([...clients.values()].flat().map((c) => c.close()));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Figures

const perCall = (total: number | undefined, calls: number) =>
  total === undefined || calls === 0 ? null : round(total / calls);

function figuresOf(measured: Measured[]): Record<string, Figure> {
  const f: Record<string, Figure> = {};
  const stats = new Map(measured.map((m) => [m.label, summarize(m.latencies)]));
  const rate = (m: Measured) => (m.wallMs > 0 ? (m.calls * 1000) / m.wallMs : 0);
  for (const m of measured) {
    const s = stats.get(m.label)!;
    f[`${m.label}_p50_ms`] = round(s.p50);
    f[`${m.label}_p95_ms`] = round(s.p95);
    f[`${m.label}_p99_ms`] = round(s.p99);
    f[`${m.label}_mean_ms`] = round(s.mean);
    f[`${m.label}_max_ms`] = round(s.max);
    f[`${m.label}_calls_per_s`] = round(rate(m));
    f[`${m.label}_server_cpu_ms_per_call`] = perCall(m.serverCpuMs, m.calls);
    f[`${m.label}_db_cpu_ms_per_call`] = perCall(m.dbCpuMs, m.calls);
    f[`${m.label}_client_cpu_ms_per_call`] = perCall(m.clientCpuMs, m.calls);
  }
  const leash = measured.find((m) => m.label === 'leash');
  const ls = stats.get('leash');
  if (leash && ls) {
    for (const m of measured) {
      if (m === leash) continue;
      const s = stats.get(m.label)!;
      const suffix = m.label === 'bare' ? '' : `_vs_${m.label}`;
      f[`overhead${suffix}_p50_ms`] = round(ls.p50 - s.p50);
      f[`overhead${suffix}_p95_ms`] = round(ls.p95 - s.p95);
      f[`overhead${suffix}_p99_ms`] = round(ls.p99 - s.p99);
      f[`throughput_ratio${suffix}`] = rate(m) > 0 ? round(rate(leash) / rate(m)) : null;
    }
  }
  return f;
}

// ---------------------------------------------------------------------------------------------------------
// The bench

export async function runOverhead(o: OverheadOptions): Promise<Result[]> {
  const concurrencies = o.concurrencies?.length ? o.concurrencies : [1, 16, 64];
  const rounds = o.rounds ?? 4;
  const refundConcurrency = o.refundConcurrency ?? 16;
  const floorConcurrencies = o.floorConcurrencies ?? [1];
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const db = await startDatabase();
  const results: Result[] = [];
  try {
    const caps = o.caps ?? true;
    const servers = await startServers(db.url, o.profileDir, caps);
    try {
      const r = servers.ready;
      const leashHeaders = { Authorization: `Bearer ${r.vaultKey}` };
      const run = Date.now().toString(36);
      const sms = (label: string) => (seq: number) => ({
        to: `+1555${String(1_000_000 + (seq % 9_000_000)).padStart(7, '0')}`,
        body: `bench ${label} ${run} #${seq}: your order has shipped.`,
      });
      const email = (label: string) => (seq: number) => ({
        to: ['pat@acme.com'],
        subject: `bench ${label} ${run} #${seq}`,
        text: 'Your refund has been processed.',
      });
      const refund = (seq: number) => ({
        payment_intent: r.paymentIntents[seq % r.paymentIntents.length],
        amount: 1,
      });
      const common = {
        rounds,
        serverPid: r.pid,
        postgresPid: db.postgresPid,
        log,
      };
      const notes = [
        'Servers (leash, bare, fake vendors) share one child process; MCP clients run in the parent, one Client per worker over Streamable HTTP.',
        `Leash: real startHttpServer + pipeline on ${db.home ? 'embedded PostgreSQL (temporary LEASH_HOME)' : 'DATABASE_URL'}, pool 16, ${caps ? 'policy with per-key and per-policy USD and request caps (never reached)' : 'policy WITHOUT caps (diagnostic run: no spend windows touched)'}, no loop guard, one vault key shared by all workers.`,
        'Bare: same SDK (McpServer), stateless Streamable HTTP with JSON responses, a new server per request, same vendor SDK clients and fakes; no policy, budget or audit.',
        `Leash and bare alternate in ${rounds} chunks each (order flipping every round) after an unmeasured warm-up; overhead = leash − bare at each percentile.`,
        'server_cpu_ms_per_call is the child process (includes the fake vendor, same for both); db_cpu_ms_per_call is the Postgres server and its backends (embedded only).',
        `bare_audited (at concurrency ${floorConcurrencies.join(', ') || 'none'}): the floor — the bare server inserting one audit row into leash's audit_log, committed durably, before the same vendor call; no key check, budget, loop guard or outcome. overhead_vs_bare_audited is what leash adds beyond a durable audit write.`,
      ];

      // Process-wide warm-up (not measured) so the first configuration does not carry JIT and pool start-up.
      log('overhead: warming up both servers');
      await compare({
        ...common,
        log: () => undefined,
        concurrency: 4,
        calls: WARMUP_CALLS,
        rounds: 1,
        targets: [
          { label: 'leash', url: r.leash, headers: leashHeaders, tool: 'send_sms', args: sms('warm') },
          { label: 'bare', url: r.bare, headers: {}, tool: 'send_sms', args: sms('warm') },
          {
            label: 'leash_email',
            url: r.leash,
            headers: leashHeaders,
            tool: 'send_email',
            args: email('warm'),
          },
          { label: 'bare_email', url: r.bare, headers: {}, tool: 'send_email', args: email('warm') },
          { label: 'floor_sms', url: r.bare, headers: {}, tool: 'send_sms_audited', args: sms('warm') },
          { label: 'floor_email', url: r.bare, headers: {}, tool: 'send_email_audited', args: email('warm') },
          { label: 'leash_refund', url: r.leash, headers: leashHeaders, tool: 'issue_refund', args: refund },
          { label: 'bare_refund', url: r.bare, headers: {}, tool: 'issue_refund_lookup', args: refund },
        ],
      });

      for (const concurrency of concurrencies) {
        for (const [tool, args] of [
          ['send_sms', sms],
          ['send_email', email],
        ] as const) {
          log(`overhead: ${tool} at concurrency ${concurrency}, ${o.calls} calls per server`);
          const measured = await compare({
            ...common,
            concurrency,
            calls: o.calls,
            targets: [
              { label: 'leash', url: r.leash, headers: leashHeaders, tool, args: args('leash') },
              { label: 'bare', url: r.bare, headers: {}, tool, args: args('bare') },
              ...(floorConcurrencies.includes(concurrency)
                ? [
                    {
                      label: 'bare_audited',
                      url: r.bare,
                      headers: {},
                      tool: `${tool}_audited`,
                      args: args('floor'),
                    },
                  ]
                : []),
            ],
          });
          results.push({
            name: `overhead.${tool}.c${concurrency}${caps ? '' : '.nocaps'}`,
            params: { tool, concurrency, calls: o.calls, rounds, caps },
            figures: figuresOf(measured),
            notes,
          });
        }
      }

      if (refundConcurrency > 0) {
        log(`overhead: issue_refund at concurrency ${refundConcurrency}, ${o.calls} calls per server`);
        const measured = await compare({
          ...common,
          concurrency: refundConcurrency,
          calls: o.calls,
          targets: [
            { label: 'leash', url: r.leash, headers: leashHeaders, tool: 'issue_refund', args: refund },
            { label: 'bare', url: r.bare, headers: {}, tool: 'issue_refund', args: refund },
            { label: 'bare_lookup', url: r.bare, headers: {}, tool: 'issue_refund_lookup', args: refund },
          ],
        });
        results.push({
          name: `overhead.issue_refund.c${refundConcurrency}${caps ? '' : '.nocaps'}`,
          params: { tool: 'issue_refund', concurrency: refundConcurrency, calls: o.calls, rounds, caps },
          figures: figuresOf(measured),
          notes: [
            ...notes,
            'issue_refund in leash reads the payment first (customer, currency, refundable amount) and then refunds: two vendor calls. ' +
              '"bare" refunds directly (one vendor call, what a plain server does); "bare_lookup" reads then refunds like leash, so overhead_vs_bare_lookup is leash\'s governance cost alone.',
          ],
        });
      }
    } finally {
      await servers.stop();
    }
  } finally {
    await db.cleanup();
  }
  return results;
}

/** One row per server per configuration, then one overhead row per configuration. */
export function overheadTables(results: Result[]) {
  const latency: Record<string, string | number | null>[] = [];
  const overhead: Record<string, string | number | null>[] = [];
  for (const r of results) {
    const f = r.figures;
    const labels = [...new Set(Object.keys(f).flatMap((k) => /^(.+)_p50_ms$/.exec(k)?.[1] ?? []))].filter(
      (l) => !l.startsWith('overhead'),
    );
    const num = (k: string) => (typeof f[k] === 'number' ? f[k] : null);
    for (const l of labels) {
      latency.push({
        tool: String(r.params.tool),
        c: r.params.concurrency as number,
        server: l,
        'p50 ms': num(`${l}_p50_ms`),
        'p95 ms': num(`${l}_p95_ms`),
        'p99 ms': num(`${l}_p99_ms`),
        'calls/s': num(`${l}_calls_per_s`),
        'server cpu ms/call': num(`${l}_server_cpu_ms_per_call`),
        'db cpu ms/call': num(`${l}_db_cpu_ms_per_call`),
        'client cpu ms/call': num(`${l}_client_cpu_ms_per_call`),
      });
    }
    for (const suffix of [
      '',
      ...labels.filter((l) => l !== 'leash' && l !== 'bare').map((l) => `_vs_${l}`),
    ]) {
      if (num(`overhead${suffix}_p50_ms`) === null) continue;
      overhead.push({
        tool: String(r.params.tool),
        c: r.params.concurrency as number,
        'leash vs': suffix ? suffix.slice(4) : 'bare',
        'Δp50 ms': num(`overhead${suffix}_p50_ms`),
        'Δp95 ms': num(`overhead${suffix}_p95_ms`),
        'Δp99 ms': num(`overhead${suffix}_p99_ms`),
        'calls/s ratio': num(`throughput_ratio${suffix}`),
      });
    }
  }
  return { latency, overhead };
}

async function main(): Promise<void> {
  const a = benchArgs();
  const results = await runOverhead({
    calls: a.calls ?? 400,
    ...(a.concurrencies ? { concurrencies: a.concurrencies } : {}),
    ...(a.rounds ? { rounds: a.rounds } : {}),
    ...(a.floor ? { floorConcurrencies: a.floor } : {}),
    ...(a.profile ? { profileDir: a.profile } : {}),
    ...(a.noCaps ? { caps: false } : {}),
  });
  if (a.json) {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
    return;
  }
  const t = overheadTables(results);
  printTable(t.latency);
  process.stdout.write('\n');
  printTable(t.overhead);
  printNotes(results);
}

if (isMain(import.meta.url)) runMain(main);
