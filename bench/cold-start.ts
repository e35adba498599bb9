// How long an agent host waits for `leash mcp` (stdio): spawn → initialize answered → tools/list answered,
// and where that time goes (node boot, module loading per package, database connect + migration check,
// first tool list).
//
//   node dist/bench/cold-start.js [--runs 7] [--json]
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { sql } from 'kysely';
import { loadConfig } from '../src/config/config.js';
import { openDatabase } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate.js';
import { authenticate } from '../src/keys/authenticate.js';
import { mintKey } from '../src/keys/vault-keys.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { validatePolicy } from '../src/policy/compile.js';
import { applyPolicy } from '../src/policies/store.js';
import { toolsForPolicy } from '../src/server/tool-list.js';
import { catalog, catalogVendors } from '../tools/index.js';
import { BENCH_POLICY } from './serve-both.js';
import {
  benchArgs,
  isMain,
  median,
  printNotes,
  printTable,
  repoRoot,
  round,
  runMain,
  startDatabase,
  type Figure,
  type Result,
} from './support.js';

export interface ColdStartOptions {
  /** Timed `leash mcp` starts (after one untimed start that warms the file cache). Default 7. */
  runs: number;
  /** Fresh processes per module-load measurement. Default min(runs, 5). */
  importRuns?: number;
  log?: (line: string) => void;
}

/** The target from the issue: an agent host sees leash's tools within this. */
export const COLD_START_TARGET_MS = 500;

const ROOT = repoRoot();
const LEASH_BIN = join(ROOT, 'bin', 'leash.js');
const dist = (path: string) => pathToFileURL(join(ROOT, 'dist', path)).href;

/** The environment of a child leash: ours without anything pointing elsewhere, plus `extra`. */
function childEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('LEASH_') && k !== 'DATABASE_URL') env[k] = v;
  return { ...env, ...extra };
}

// ---------------------------------------------------------------------------------------------------------
// spawn → initialize → tools/list over stdio

interface StartTiming {
  initializeMs: number;
  toolsListMs: number;
  tools: number;
}

async function timeOneStart(env: Record<string, string>): Promise<StartTiming> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [LEASH_BIN, 'mcp'],
    env,
    cwd: ROOT,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const client = new Client({ name: 'leash-bench-cold', version: '0.0.0' });
  const t0 = performance.now();
  try {
    await client.connect(transport); // spawns, then initialize + notifications/initialized
    const t1 = performance.now();
    const { tools } = await client.listTools();
    const t2 = performance.now();
    return { initializeMs: t1 - t0, toolsListMs: t2 - t0, tools: tools.length };
  } catch (error) {
    throw new Error(
      `leash mcp did not answer: ${error instanceof Error ? error.message : String(error)}; stderr: ${stderr.slice(-500)}`,
      { cause: error },
    );
  } finally {
    await client.close().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Module loading, each measured in a fresh node process

interface ImportTiming {
  /** From process start to the first line of the script (node's own boot). */
  bootMs: number;
  /** Per step: ms of `await import(...)` of every specifier in that step, in order. */
  stepMs: number[];
  /** Spawn → exit, as seen from here. */
  wallMs: number;
}

/** Runs `node --input-type=module -e` in the repo root, timing each step's dynamic imports. */
function timeImports(steps: string[][]): Promise<ImportTiming> {
  const body = steps
    .map(
      (specs) =>
        `{ const a = performance.now(); ${specs.map((s) => `await import(${JSON.stringify(s)});`).join(' ')} steps.push(performance.now() - a); }`,
    )
    .join('\n');
  const script = `const boot = performance.now(); const steps = [];\n${body}\nprocess.stdout.write(JSON.stringify({ boot, steps }));`;
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      env: childEnv({}),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      const wallMs = performance.now() - started;
      if (code !== 0) return reject(new Error(`import timing failed (${code}): ${err.slice(-500)}`));
      try {
        const r = JSON.parse(out) as { boot: number; steps: number[] };
        resolve({ bootMs: r.boot, stepMs: r.steps, wallMs });
      } catch {
        reject(new Error(`import timing printed ${out.slice(0, 200)}`));
      }
    });
  });
}

async function medianImports(steps: string[][], runs: number) {
  const samples: ImportTiming[] = [];
  for (let i = 0; i < runs; i++) samples.push(await timeImports(steps));
  return {
    bootMs: median(samples.map((s) => s.bootMs)),
    stepMs: steps.map((_, i) => median(samples.map((s) => s.stepMs[i] ?? Number.NaN))),
    wallMs: median(samples.map((s) => s.wallMs)),
  };
}

// ---------------------------------------------------------------------------------------------------------
// The bench

export async function runColdStart(o: ColdStartOptions): Promise<Result[]> {
  const runs = Math.max(1, o.runs);
  const importRuns = o.importRuns ?? Math.min(runs, 5);
  const log = o.log ?? ((line: string) => process.stderr.write(line + '\n'));
  const db = await startDatabase();
  const home = db.home ?? (await mkdtemp(join(tmpdir(), 'leash-bench-home-')));
  const results: Result[] = [];
  try {
    // The database is running and migrated, the policy applied and a key minted before any timing.
    const config = loadConfig(
      { DATABASE_URL: db.url, LEASH_HOME: home, LEASH_LOG: 'silent' },
      catalogVendors,
    );
    const handle = await openDatabase(config, { url: db.url, poolMax: 1 });
    let vaultKey: string;
    try {
      const doc = validatePolicy(BENCH_POLICY, ruleSpecs(catalog));
      await applyPolicy(handle.db, doc);
      vaultKey = (await mintKey(handle.db, { agent: 'bench-cold', runId: 'cold', policy: doc.name })).key;
    } finally {
      await handle.close();
    }
    const env = childEnv({ DATABASE_URL: db.url, LEASH_HOME: home, LEASH_VAULT_KEY: vaultKey });

    // 1. spawn → initialize → tools/list
    log(`cold start: 1 untimed + ${runs} timed starts of leash mcp`);
    await timeOneStart(env);
    const starts: StartTiming[] = [];
    for (let i = 0; i < runs; i++) {
      const t = await timeOneStart(env);
      starts.push(t);
      log(`  run ${i + 1}: initialize ${round(t.initializeMs)} ms, tools/list ${round(t.toolsListMs)} ms`);
    }
    const init = starts.map((s) => s.initializeMs);
    const list = starts.map((s) => s.toolsListMs);
    const listMedian = median(list);
    results.push({
      name: 'cold_start.leash_mcp',
      params: { runs, transport: 'stdio', command: 'node bin/leash.js mcp' },
      figures: {
        initialize_median_ms: round(median(init)),
        initialize_min_ms: round(Math.min(...init)),
        initialize_max_ms: round(Math.max(...init)),
        tools_list_median_ms: round(listMedian),
        tools_list_min_ms: round(Math.min(...list)),
        tools_list_max_ms: round(Math.max(...list)),
        tools_listed: starts[0]?.tools ?? null,
        target_ms: COLD_START_TARGET_MS,
        meets_target: listMedian <= COLD_START_TARGET_MS,
      },
      notes: [
        'Timed from before the spawn (StdioClientTransport.start) to initialize answered, and to tools/list answered; one untimed start first warms the OS file cache.',
        'Database already running, migrated, policy applied and key minted; `leash mcp` still opens its pool and runs the migration check on every start.',
      ],
    });

    // 2. Module loading, each in a fresh process
    log(`cold start: module load times (${importRuns} fresh processes each)`);
    const vendorSdks = ['stripe', 'twilio', 'resend'];
    const single: [string, string[]][] = [
      ['cli', [dist('src/cli/main.js')]],
      ['catalog', [dist('tools/index.js')]],
      ['stripe', ['stripe']],
      ['twilio', ['twilio']],
      ['resend', ['resend']],
      ['mcp_sdk', ['@modelcontextprotocol/sdk/server/index.js', '@modelcontextprotocol/sdk/server/stdio.js']],
      ['pg_kysely', ['pg', 'kysely']],
      ['zod', ['zod']],
      ['yaml', ['yaml']],
    ];
    const figures: Record<string, Figure> = {};
    const empty = await medianImports([], importRuns);
    figures.node_boot_ms = round(empty.bootMs);
    figures.node_empty_process_ms = round(empty.wallMs);
    for (const [label, specs] of single) {
      const t = await medianImports([specs], importRuns);
      figures[`${label}_import_ms`] = round(t.stepMs[0] ?? Number.NaN);
      log(`  ${label}: ${round(t.stepMs[0] ?? Number.NaN)} ms`);
    }
    // A waterfall in one process: each step's time is what it adds given the steps before it are loaded,
    // so the steps add up to the CLI's whole module load; the last step is leash's own code.
    const waterfall: [string, string[]][] = [
      ['zod', ['zod']],
      ['pg_kysely', ['pg', 'kysely']],
      [
        'mcp_sdk_server_stdio',
        ['@modelcontextprotocol/sdk/server/index.js', '@modelcontextprotocol/sdk/server/stdio.js'],
      ],
      ['mcp_sdk_streamable_http', ['@modelcontextprotocol/sdk/server/streamableHttp.js']],
      ['yaml', ['yaml']],
      ['stripe', ['stripe']],
      ['twilio', ['twilio']],
      ['resend', ['resend']],
      ['leash_own', [dist('src/cli/main.js')]],
    ];
    const w = await medianImports(
      waterfall.map(([, specs]) => specs),
      importRuns,
    );
    let total = 0;
    waterfall.forEach(([label], i) => {
      const ms = w.stepMs[i] ?? Number.NaN;
      total += ms;
      figures[`waterfall_${label}_ms`] = round(ms);
    });
    figures.waterfall_total_ms = round(total);
    const sdkMs = vendorSdks.reduce(
      (sum, name) => sum + (w.stepMs[waterfall.findIndex(([label]) => label === name)] ?? Number.NaN),
      0,
    );
    figures.waterfall_vendor_sdks_ms = round(sdkMs);
    const share = sdkMs / total;
    figures.vendor_sdk_share_of_cli = round(share);
    const cliMs = total;

    // 3. What `leash mcp` does before it can answer tools/list, in this process (modules already loaded).
    const timed = await openDatabase(config, { url: db.url, poolMax: 1, migrate: false });
    try {
      const a = performance.now();
      await sql`select 1`.execute(timed.db);
      const b = performance.now();
      await migrateToLatest(timed.db);
      const c = performance.now();
      const auth = await authenticate(timed.db, vaultKey);
      const d = performance.now();
      if (!auth.ok) throw new Error('the bench key did not authenticate');
      const tools = toolsForPolicy(catalog, auth.key.policy);
      const e = performance.now();
      figures.db_connect_ms = round(b - a);
      figures.migration_check_ms = round(c - b);
      figures.authenticate_ms = round(d - c);
      figures.tool_list_build_ms = round(e - d);
      figures.tools_built = tools.length;
    } finally {
      await timed.close();
    }

    const notes = [
      'Module load times are medians over fresh `node --input-type=module -e` processes (dynamic import timed with performance.now()); node_boot_ms is process start to first script line.',
      "Imports share dependencies, so the standalone *_import_ms figures do not add up to cli_import_ms; the waterfall_* steps do (each is what that step adds once the steps before it are loaded; waterfall_leash_own_ms is leash's own modules).",
      'db_connect/migration_check/authenticate/tool_list_build are measured in the bench process (modules loaded, first use of the compiled-policy and tool-list caches).',
    ];
    notes.push(
      share >= 0.4
        ? `Vendor SDK imports dominate the CLI's module load: stripe+twilio+resend take ${round(sdkMs)} ms of ${round(cliMs)} ms (${Math.round(share * 100)}%); every \`leash\` command loads them because main.ts imports every command group and tools/index.ts imports every vendor client.`
        : `Vendor SDK imports take ${round(sdkMs)} ms of the CLI's ${round(cliMs)} ms module load (${Math.round(share * 100)}%).`,
    );
    const steps = waterfall
      .map(([label], i) => [label, w.stepMs[i] ?? Number.NaN] as const)
      .sort((a, b) => b[1] - a[1]);
    notes.push(
      `Module load waterfall, largest first: ${steps.map(([label, ms]) => `${label} ${round(ms)} ms`).join(', ')} (total ${round(total)} ms). ` +
        '`leash mcp` also loads the Streamable HTTP transport (and its hono dependency) because main.ts imports serve.ts, which imports server/http.ts.',
    );
    if (listMedian > COLD_START_TARGET_MS)
      notes.push(
        `Median spawn → tools/list is ${round(listMedian)} ms, over the ${COLD_START_TARGET_MS} ms target.`,
      );
    results.push({ name: 'cold_start.profile', params: { import_runs: importRuns }, figures, notes });
  } finally {
    await db.cleanup();
    if (!db.home) await rm(home, { recursive: true, force: true });
  }
  return results;
}

async function main(): Promise<void> {
  const a = benchArgs();
  const results = await runColdStart({ runs: a.runs ?? 7 });
  if (a.json) {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
    return;
  }
  for (const r of results) {
    process.stdout.write(`\n${r.name}\n`);
    printTable(Object.entries(r.figures).map(([figure, value]) => ({ figure, value })));
  }
  printNotes(results);
}

if (isMain(import.meta.url)) runMain(main);
