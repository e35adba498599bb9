// `npm run bench`: every benchmark in one run, short by default (under 3 minutes), `--full` for the sizes
// BENCHMARKS.md reports. Writes bench/results/latest.json and prints a table per benchmark.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runAdmission } from './admission.js';
import { runAuditVolume } from './audit-volume.js';
import { runAuditScale } from './audit-scale.js';
import { runCaps } from './caps.js';
import { runColdStart } from './cold-start.js';
import { runOverhead } from './overhead.js';
import { runParse } from './parse.js';
import { runProxy } from './proxy.js';
import { runRevoke } from './revoke.js';
import { runScale, SCALE_FULL } from './scale.js';
import { repoRoot, type Result } from './support.js';

const { values } = parseArgs({
  options: {
    full: { type: 'boolean' },
    only: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help) {
  process.stdout.write(
    'Usage: npm run bench [-- --full] [-- --only overhead,admission,proxy,cold-start,caps,revoke,audit,audit-scale,parse,scale]\n\n' +
      'Short run by default (under 3 minutes); --full uses the sizes BENCHMARKS.md reports (~10 minutes).\n' +
      'scale runs only when named (--only scale: under 5 minutes short, ~10 with --full).\n',
  );
  process.exit(0);
}

const full = Boolean(values.full);
const only = values.only ? new Set(values.only.split(',')) : undefined;
const want = (name: string) => !only || only.has(name);
const log = (line: string) => process.stderr.write(`${line}\n`);

type AnyResult = Pick<Result, 'name' | 'notes'> & {
  params: Record<string, unknown>;
  figures: Record<string, unknown>;
};
const results: AnyResult[] = [];

async function step(name: string, run: () => Promise<AnyResult[]>) {
  if (!want(name)) return;
  const started = performance.now();
  log(`\n▶ ${name}`);
  const r = await run();
  results.push(...r);
  for (const x of r) {
    log(`  ${x.name}`);
    for (const [k, v] of Object.entries(x.figures)) log(`    ${k.padEnd(34)} ${String(v)}`);
  }
  log(`  (${((performance.now() - started) / 1000).toFixed(1)} s)`);
}

await step('overhead', () => runOverhead({ calls: full ? 2000 : 400, concurrencies: [1, 16, 64], log }));
await step('admission', () => runAdmission({ calls: full ? 3000 : 1000, concurrencies: [1, 16], log }));
await step('proxy', () => runProxy({ calls: full ? 2000 : 400, concurrencies: [1, 16], log }));
await step('cold-start', () => runColdStart({ runs: full ? 9 : 5, log }));
await step('caps', () => runCaps({ replicas: 4, calls: 500 }));
await step('revoke', () => runRevoke({ via: ['cli', 'admin'] }));
await step('audit', () => runAuditVolume({ rows: full ? 1_000_000 : 200_000, repeats: 5 }));
// Not in the default run (minutes to hours of row generation): `--only audit-scale`.
if (only?.has('audit-scale'))
  await step('audit-scale', () =>
    runAuditScale(full ? { rows: 10_000_000 } : { rows: 2_000_000, steps: [1_000_000, 2_000_000] }),
  );
await step('parse', () => runParse({ rounds: full ? 5 : 2, log }));
// Not in a default run (~4.5 minutes short): `--only scale`.
if (only?.has('scale')) await step('scale', () => runScale({ ...(full && SCALE_FULL), log }));

const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, full };
const dir = join(repoRoot(), 'bench', 'results');
await mkdir(dir, { recursive: true });
await writeFile(
  join(dir, 'latest.json'),
  JSON.stringify({ at: new Date().toISOString(), machine, results }, null, 2),
);
log(`\nwrote bench/results/latest.json (${results.length} results)`);
