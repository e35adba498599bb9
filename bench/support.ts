// Shared benchmark helpers: latency percentiles, a concurrent call loop, a database to run against,
// CPU accounting from /proc, readable tables, and the Result shape every bench returns.
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { destroyEmbedded, embeddedStatus, ensureEmbedded } from '../src/db/embedded.js';

/** A figure as run.ts writes it out. */
export type Figure = number | string | boolean | null;

/** What every bench returns, one per measured configuration. */
export interface Result {
  /** Stable, dotted: e.g. `overhead.send_sms.c16`, `cold_start.tools_list`. */
  name: string;
  /** What was measured and how (tool, concurrency, calls, runs…). */
  params: Record<string, Figure | Figure[]>;
  /** Measured numbers; latencies in ms, rates in calls/s, CPU in ms per call. */
  figures: Record<string, Figure>;
  /** Plain sentences: caveats, where the time goes. */
  notes: string[];
}

/** The repository root (works from bench/ under a TS runner and from dist/bench/). */
export function repoRoot(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && resolve(dir, '..') !== dir) dir = resolve(dir, '..');
  return dir;
}

// ---------------------------------------------------------------------------------------------------------
// Statistics

/** Nearest-rank percentile (p in 0..100) of samples already sorted ascending; NaN when there are none. */
function ranked(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? Number.NaN;
}

/** Nearest-rank percentile (p in 0..100) of unsorted samples; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  return ranked(
    [...samples].sort((a, b) => a - b),
    p,
  );
}

export interface Summary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** p50/p95/p99, mean, min and max of latency samples (ms). */
export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const total = sorted.reduce((sum, v) => sum + v, 0);
  return {
    n: sorted.length,
    p50: ranked(sorted, 50),
    p95: ranked(sorted, 95),
    p99: ranked(sorted, 99),
    mean: sorted.length ? total / sorted.length : Number.NaN,
    min: sorted[0] ?? Number.NaN,
    max: sorted.at(-1) ?? Number.NaN,
  };
}

/** The median of a few samples (cold-start runs). */
export function median(samples: readonly number[]): number {
  return percentile(samples, 50);
}

/** Rounds for a table or a JSON figure: 2 decimals below 100, 1 below 10,000, else whole. */
export function round(v: number): number {
  if (!Number.isFinite(v)) return v;
  const a = Math.abs(v);
  return a < 100 ? Math.round(v * 100) / 100 : a < 10_000 ? Math.round(v * 10) / 10 : Math.round(v);
}

// ---------------------------------------------------------------------------------------------------------
// The call loop

export interface LoopOptions {
  /** Workers calling at once; each waits for its answer before its next call. */
  concurrency: number;
  /** Calls in total, shared by the workers. */
  calls: number;
  /** One call. `i` is the call's index (0..calls-1), `worker` the worker running it (0..concurrency-1). */
  call: (i: number, worker: number) => Promise<void>;
}

export interface LoopResult {
  /** Per successful call, ms (performance.now()), in completion order. */
  latencies: number[];
  wallMs: number;
  /** Completed calls (successful or not) per second of wall time. */
  callsPerSec: number;
  errors: number;
  firstError: string | undefined;
}

/** Runs `calls` calls with `concurrency` workers pulling from one counter (closed loop). */
export async function measureLoop(o: LoopOptions): Promise<LoopResult> {
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const worker = async (w: number) => {
    for (let i = next++; i < o.calls; i = next++) {
      const t0 = performance.now();
      try {
        await o.call(i, w);
        latencies.push(performance.now() - t0);
      } catch (error) {
        errors++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency) }, (_, w) => worker(w)));
  const wallMs = performance.now() - started;
  const done = latencies.length + errors;
  return { latencies, wallMs, callsPerSec: wallMs > 0 ? (done * 1000) / wallMs : 0, errors, firstError };
}

// ---------------------------------------------------------------------------------------------------------
// CPU accounting (Linux /proc; undefined elsewhere)

let ticksPerSecond = 100; // CLK_TCK is 100 on every Linux this runs on; getconf is not worth a spawn

/** Sets CLK_TCK if a caller knows better (tests on exotic kernels). */
export function setClockTicks(hz: number): void {
  ticksPerSecond = hz;
}

function statFields(pid: number | string): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** CPU ms a process has used (user + system), or undefined when /proc cannot tell. */
export function processCpuMs(pid: number): number | undefined {
  const f = statFields(pid);
  if (!f) return undefined;
  // After the name: [0]=state [1]=ppid … [11]=utime [12]=stime [13]=cutime [14]=cstime
  const ticks = Number(f[11]) + Number(f[12]);
  return Number.isFinite(ticks) ? (ticks * 1000) / ticksPerSecond : undefined;
}

/**
 * CPU ms of a process and its direct children, including children that have exited and been waited for
 * (a Postgres postmaster and its backends). Undefined when /proc cannot tell.
 */
export function processTreeCpuMs(pid: number): number | undefined {
  const own = statFields(pid);
  if (!own) return undefined;
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(entry);
    if (f && Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12]);
  }
  return Number.isFinite(ticks) ? (ticks * 1000) / ticksPerSecond : undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Database

export interface BenchDatabase {
  /** A fresh database's URL (or DATABASE_URL as given). */
  url: string;
  /** The LEASH_HOME the embedded server lives in (a temporary directory), when embedded. */
  home: string | undefined;
  /** The postmaster's pid when the server is the embedded one started here (for CPU accounting). */
  postgresPid: number | undefined;
  cleanup(): Promise<void>;
}

/**
 * A Postgres URL for benchmarks: DATABASE_URL if set, else a fresh database on the embedded server of a
 * temporary LEASH_HOME (initdb + start, ~2 s), stopped and removed by cleanup().
 */
export async function startDatabase(): Promise<BenchDatabase> {
  const given = process.env.DATABASE_URL;
  if (given) {
    // The postmaster's pid of a server started by hand (e.g. with pg_stat_statements), for CPU accounting.
    const pid = Number(process.env.LEASH_BENCH_POSTGRES_PID);
    const postgresPid = Number.isInteger(pid) && pid > 0 ? pid : undefined;
    return { url: given, home: undefined, postgresPid, cleanup: async () => {} };
  }
  const home = await mkdtemp(join(tmpdir(), 'leash-bench-'));
  try {
    const server = await ensureEmbedded(home);
    const name = `leash_bench_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: server.adminUrl });
    await admin.connect();
    try {
      await admin.query(`create database ${name}`);
    } finally {
      await admin.end();
    }
    const url = new URL(server.adminUrl);
    url.pathname = `/${name}`;
    const status = await embeddedStatus(home);
    return {
      url: url.toString(),
      home,
      postgresPid: status.pid,
      cleanup: async () => {
        await destroyEmbedded(home);
        await rm(home, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await destroyEmbedded(home).catch(() => undefined);
    await rm(home, { recursive: true, force: true });
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Output

type Cell = string | number | boolean | null | undefined;

function cell(v: Cell): string {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') return Number.isFinite(v) ? String(round(v)) : '–';
  return String(v);
}

/** A plain text table of rows (columns: the union of their keys, in first-seen order); numbers right-aligned. */
export function formatTable(rows: readonly Record<string, Cell>[]): string {
  if (rows.length === 0) return '(no rows)\n';
  const columns: string[] = [];
  for (const row of rows) for (const k of Object.keys(row)) if (!columns.includes(k)) columns.push(k);
  const text = rows.map((row) => columns.map((c) => cell(row[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...text.map((r) => (r[i] ?? '').length)));
  const numeric = columns.map((c) => rows.every((r) => r[c] === undefined || typeof r[c] === 'number'));
  const line = (cells: string[]) =>
    cells.map((s, i) => (numeric[i] ? s.padStart(widths[i] ?? 0) : s.padEnd(widths[i] ?? 0))).join('  ');
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...text.map(line)].join('\n') + '\n';
}

/** Prints formatTable(rows) to stdout. */
export function printTable(rows: readonly Record<string, Cell>[]): void {
  process.stdout.write(formatTable(rows));
}

/** Prints results as JSON (`--json`), else as a table with one row a result: its name, then its figures. */
export function printResults(results: readonly Result[], json: boolean | undefined): void {
  if (json) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  else printTable(results.map((r) => ({ case: r.name, ...r.figures })));
}

/** Prints each result's notes under a heading. */
export function printNotes(results: readonly Result[]): void {
  const notes = [...new Set(results.flatMap((r) => r.notes))];
  if (notes.length) process.stdout.write('\nNotes:\n' + notes.map((n) => `- ${n}`).join('\n') + '\n');
}

// ---------------------------------------------------------------------------------------------------------
// Running a bench module directly

/** True when this module is the script node was started with (`node dist/bench/x.js`). */
export function isMain(moduleUrl: string): boolean {
  const script = process.argv[1];
  return Boolean(script) && pathToFileURL(resolve(script ?? '')).href === moduleUrl;
}

/** `--calls 400 --concurrency 1,16,64 --runs 7 --json` from argv. */
export function benchArgs(argv = process.argv.slice(2)) {
  const { values } = parseArgs({
    args: argv,
    options: {
      calls: { type: 'string' },
      concurrency: { type: 'string' },
      floor: { type: 'string' },
      runs: { type: 'string' },
      rounds: { type: 'string' },
      json: { type: 'boolean' },
      profile: { type: 'string' },
      'no-caps': { type: 'boolean' },
      policies: { type: 'string' },
      queues: { type: 'string' },
    },
    strict: true,
  });
  const int = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got '${v}'`);
    return n;
  };
  return {
    calls: int(values.calls, 'calls'),
    runs: int(values.runs, 'runs'),
    rounds: int(values.rounds, 'rounds'),
    concurrencies: values.concurrency
      ?.split(',')
      .filter(Boolean)
      .map((c) => int(c.trim(), 'concurrency') ?? 1),
    /** Concurrencies at which the overhead bench also runs the floor (`bare_audited`). */
    floor: values.floor
      ?.split(',')
      .filter(Boolean)
      .map((c) => int(c.trim(), 'floor') ?? 1),
    json: Boolean(values.json),
    /** A directory for V8 CPU profiles of the measured server process. */
    profile: values.profile,
    /** Run leash without budget caps (overhead diagnostic). */
    noCaps: Boolean(values['no-caps']),
    /** Admission hot rows: the policy counts to spread calls over (`--policies 1,16`). */
    policies: values.policies
      ?.split(',')
      .filter(Boolean)
      .map((c) => int(c.trim(), 'policies') ?? 1),
    /** Admission hot rows: AdmissionQueues (replicas) admitting at once. */
    queues: int(values.queues, 'queues'),
  };
}

/** Runs a bench's main(), printing a failure and setting the exit code instead of an unhandled rejection. */
export function runMain(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  });
}

/** A port nothing listens on now (another process may take it before the server does: the caller retries). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('no free port on 127.0.0.1'))));
    });
  });
}
