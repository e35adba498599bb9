// Bench plumbing for the multi-process benchmarks (caps, revoke, audit volume): a bench database, N real
// `leash serve` replicas as separate processes, MCP clients, a CLI runner and a small table printer.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import pg from 'pg';
import { loadConfig } from '../src/config/config.js';
import { openDatabase, type DbHandle } from '../src/db/database.js';
import { destroyEmbedded, ensureEmbedded } from '../src/db/embedded.js';
import { catalogVendors } from '../tools/index.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';

/** One benchmark scenario's outcome, as every bench module returns it. */
export interface BenchResult {
  name: string;
  params: Record<string, unknown>;
  figures: Record<string, number | string>;
  notes: string[];
}

export const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';
export const FAKE_STRIPE_KEY = 'sk_test_bench_fake_0123456789';

/** The directory holding package.json (from bench/ under tsx and from dist/bench/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** The built `leash` command (bin/leash.js runs dist/src/cli/main.js, so `npm run build` first). */
export function leashBin(): string {
  return join(packageRoot(), 'bin', 'leash.js');
}

/** This process's environment minus anything that would point a child leash elsewhere. */
export function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('LEASH_') || k === 'DATABASE_URL') delete env[k];
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

// ---------------------------------------------------------------------------------------------------------
// Database

export interface BenchDatabase {
  /** URL of the fresh, migrated bench database. */
  url: string;
  handle: DbHandle;
  /** True when the server is an embedded one this process started in a temporary LEASH_HOME. */
  embedded: boolean;
  close(): Promise<void>;
}

/**
 * A fresh, migrated database for one bench: a new database on `DATABASE_URL`'s server when set (falling back to
 * that database itself if it may not create databases), else on an embedded server started in a temporary
 * LEASH_HOME. `close()` drops what it created and stops and removes the embedded server.
 */
export async function benchDatabase(o: { poolMax?: number } = {}): Promise<BenchDatabase> {
  let home: string | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    home = await mkdtemp(join(tmpdir(), 'leash-bench-'));
    try {
      adminUrl = (await ensureEmbedded(home)).adminUrl;
    } catch (error) {
      await destroyEmbedded(home).catch(() => undefined);
      await rm(home, { recursive: true, force: true });
      throw error;
    }
  }
  const name = `leash_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  let created = false;
  try {
    await admin.query(`create database ${name}`);
    created = true;
  } catch (error) {
    // An embedded server started here is not left behind.
    if (home) await destroyEmbedded(home).finally(() => rm(home, { recursive: true, force: true }));
    if (home) throw error;
    // DATABASE_URL whose user may not create databases: use that database as it is.
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  if (created) u.pathname = `/${name}`;
  const url = u.toString();
  const handle = await openDatabase(loadConfig({ LEASH_HOME: home ?? tmpdir() }, catalogVendors), {
    url,
    poolMax: o.poolMax ?? 8,
  });
  let closed = false;
  return {
    url,
    handle,
    embedded: Boolean(home),
    async close() {
      if (closed) return;
      closed = true;
      await handle.close().catch(() => undefined);
      if (home) {
        await destroyEmbedded(home).catch(() => undefined);
        await rm(home, { recursive: true, force: true });
      } else if (created && adminUrl) {
        const c = new pg.Client({ connectionString: adminUrl });
        await c.connect();
        await c.query(`drop database if exists ${name} with (force)`).catch(() => undefined);
        await c.end();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// Replicas

export interface Replica {
  /** e.g. http://127.0.0.1:41234 */
  url: string;
  mcpUrl: string;
  pid: number;
  child: ChildProcess;
  /** stderr lines after the ready line (LEASH_LOG=error: only errors), at most 200 kept. */
  errors: string[];
}

export interface Cluster {
  replicas: Replica[];
  stripe: StripeFake;
  /** SIGTERMs every replica and waits for them (SIGKILL after 5 s); closes the fake Stripe if it started it. */
  close(): Promise<void>;
}

export interface ClusterOptions {
  replicas: number;
  databaseUrl: string;
  /** A fake Stripe already running in this process; otherwise one is started (unseeded) and closed with the cluster. */
  stripe?: StripeFake;
  adminToken?: string;
  logLevel?: 'silent' | 'error' | 'info' | 'debug';
  /** Extra env for every replica. */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

const READY = /leash serving MCP at (http:\/\/\S+)\/mcp/;

function startReplica(env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Replica> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [leashBin(), 'serve', '--port', '0'], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const errors: string[] = [];
    let buffered = '';
    let ready: Replica | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`leash serve did not start within ${timeoutMs} ms: ${buffered.slice(-500)}`));
    }, timeoutMs);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const m = READY.exec(line);
        if (!ready && m?.[1]) {
          clearTimeout(timer);
          ready = { url: m[1], mcpUrl: `${m[1]}/mcp`, pid: child.pid ?? 0, child, errors };
          resolve(ready);
        } else if (line.trim() && errors.length < 200) errors.push(line);
      }
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      if (ready) return;
      clearTimeout(timer);
      reject(new Error(`leash serve exited (${code ?? signal}) before serving: ${buffered.slice(-500)}`));
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Starts N `leash serve --port 0` processes on one database, pointed at a fake Stripe in this process. */
export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const ownStripe = !o.stripe;
  const stripe = o.stripe ?? (await startStripeFake(false));
  const home = await mkdtemp(join(tmpdir(), 'leash-bench-replica-'));
  const env = cleanEnv({
    DATABASE_URL: o.databaseUrl,
    LEASH_HOME: home,
    LEASH_ADMIN_TOKEN: o.adminToken ?? ADMIN_TOKEN,
    STRIPE_SECRET_KEY: FAKE_STRIPE_KEY,
    LEASH_STRIPE_BASE_URL: stripe.url,
    LEASH_LOG: o.logLevel ?? 'error',
    ...o.env,
  });
  const started = await Promise.allSettled(
    Array.from({ length: o.replicas }, () => startReplica(env, o.readyTimeoutMs ?? 30_000)),
  );
  const replicas = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const close = async () => {
    await Promise.all(replicas.map((r) => stopChild(r.child)));
    if (ownStripe) await stripe.close();
    await rm(home, { recursive: true, force: true });
  };
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await close();
    throw failed.reason;
  }
  return { replicas, stripe, close };
}

// ---------------------------------------------------------------------------------------------------------
// Clients

/** A real MCP client over Streamable HTTP with the vault key as bearer token. */
export async function mcpClient(mcpUrl: string, key: string, name = 'bench-agent'): Promise<Client> {
  const client = new Client({ name, version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(mcpUrl), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

export interface CallOutcome {
  ok: boolean;
  /** The refusal code (`structuredContent.code`), `transport_error` when the request itself failed, or null. */
  code: string | null;
  structured: Record<string, unknown> | undefined;
}

/** Calls a tool and reduces the answer to ok / refusal code, never throwing. */
export async function callTool(client: Client, name: string, args: Record<string, unknown>) {
  try {
    const r = (await client.callTool({ name, arguments: args })) as CallToolResult;
    const structured = r.structuredContent;
    const code = r.isError && typeof structured?.code === 'string' ? structured.code : null;
    return { ok: !r.isError, code: r.isError ? (code ?? 'error') : null, structured } satisfies CallOutcome;
  } catch (error) {
    return {
      ok: false,
      code: 'transport_error',
      structured: { message: error instanceof Error ? error.message : String(error) },
    } satisfies CallOutcome;
  }
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** performance.now() when spawned and when it exited. */
  startedAt: number;
  endedAt: number;
}

/** Runs `leash <args>` as a separate process and waits for it to exit. */
export function runLeashCli(args: string[], env: NodeJS.ProcessEnv): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const startedAt = performance.now();
    const child = spawn(process.execPath, [leashBin(), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, startedAt, endedAt: performance.now() }));
  });
}

// ---------------------------------------------------------------------------------------------------------
// Numbers and output

// Shared with the other benchmarks.
export { isMain, median, percentile } from './support.js';

/** Rounds to `digits` decimals (figures are read by people). */
export const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Prints results as readable tables: one block per scenario, figures aligned, then notes. */
export function printResults(results: readonly BenchResult[], out: (s: string) => void = console.log): void {
  for (const r of results) {
    out(`\n== ${r.name}  ${JSON.stringify(r.params)}`);
    const keys = Object.keys(r.figures);
    const width = Math.max(...keys.map((k) => k.length), 10);
    for (const k of keys) out(`  ${k.padEnd(width)}  ${String(r.figures[k])}`);
    for (const n of r.notes) out(`  - ${n}`);
  }
}

/** `--name value` flags as numbers/strings: `{ replicas: 4 }` from `--replicas 4`. */
export function parseFlags(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (!a.startsWith('--')) continue;
    const [k, inline] = a.slice(2).split('=', 2);
    if (!k) continue;
    if (inline !== undefined) out[k] = inline;
    else if (argv[i + 1] !== undefined && !argv[i + 1]?.startsWith('--')) out[k] = argv[++i] ?? '';
    else out[k] = 'true';
  }
  return out;
}
