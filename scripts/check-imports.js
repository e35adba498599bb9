#!/usr/bin/env node
// Checks the shape of leash's imports (src/, tools/, bench/; tests left out): no import circles, no more than
// MAX_UP arrows from a lower layer to a higher one, and none of the FORBIDDEN arrows (only the CLI imports tools/;
// doors never import src/keys). Layers, bottom first, are listed below: a folder may import its own files and any
// layer below it. Reads imports with the TypeScript compiler's own pre-processor (type-only imports count: a
// circle of types is still a circle to a reader). Exit 0 when the shape holds, 1 when it does not (each circle,
// upward and forbidden arrow printed), 2 on a usage error.
//   node scripts/check-imports.js [--json] [--max-up N]
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Layers, lowest first, as DESIGN.md's layout reads bottom-up: pure policy and the frozen config (which learns the
 * vendors from the declarations it is handed, never from tools/), the HTTP kit every route shares, the database,
 * the stores over it, the pipeline, the vendor kit and the catalog, the doors and operator API, the CLI (the
 * composition root), benchmarks. A file belongs to the longest prefix that names it.
 */
const LAYERS = [
  ['src/policy'],
  ['src/config'],
  ['src/http'],
  ['src/db'],
  ['src/credentials', 'src/audit', 'src/policies'],
  ['src/keys', 'src/ledger', 'src/approvals'],
  ['src/pipeline'],
  ['src/vendor-kit'],
  ['tools'],
  ['src/admin', 'src/server'],
  ['src/cli'],
  ['bench'],
];

const under = (r, p) => r === p || r.startsWith(`${p}/`);

/** Arrows no file may draw, whatever --max-up allows: the design's two rules a layer order alone cannot state. */
const FORBIDDEN = [
  {
    from: 'src',
    except: 'src/cli',
    to: 'tools',
    why: 'only the composition root (src/cli) imports the tool catalog',
  },
  {
    from: 'src/server',
    to: 'src/keys',
    why: "doors hand the presented key to the pipeline's authenticate stage; they never read one",
  },
];

let values;
try {
  ({ values } = parseArgs({
    options: {
      json: { type: 'boolean' },
      'max-up': { type: 'string', default: '3' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (error) {
  process.stderr.write(`check-imports: ${error.message}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(
    'Usage: node scripts/check-imports.js [--json] [--max-up N]\n\n' +
      'Fails (exit 1) on any import circle among src/, tools/ and bench/, or on more than N (default 3)\n' +
      'imports from a lower layer to a higher one, or on a forbidden import (both listed in this script).\n',
  );
  process.exit(0);
}
const maxUp = Number(values['max-up']);
if (!Number.isInteger(maxUp) || maxUp < 0) {
  process.stderr.write('check-imports: --max-up must be a whole number\n');
  process.exit(2);
}

function sources(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (/\.ts$/.test(name) && !/\.(test|d)\.ts$/.test(name)) out.push(path);
  }
  return out;
}

const files = ['src', 'tools', 'bench'].flatMap((d) => sources(join(ROOT, d)));
const known = new Set(files);
const rel = (f) => relative(ROOT, f).split(sep).join('/');

/** Relative imports of one file, resolved to the .ts files they name. */
function importsOf(file) {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  const out = new Set();
  for (const { fileName } of info.importedFiles) {
    if (!fileName.startsWith('.')) continue;
    const base = resolve(dirname(file), fileName);
    const candidates = [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')];
    const hit = candidates.find((c) => known.has(c));
    if (hit) out.add(hit);
  }
  return [...out];
}

const graph = new Map(files.map((f) => [f, importsOf(f)]));

function layerOf(file) {
  const r = rel(file);
  let best = -1;
  let bestLength = -1;
  LAYERS.forEach((prefixes, i) => {
    for (const p of prefixes)
      if (under(r, p) && p.length > bestLength) {
        best = i;
        bestLength = p.length;
      }
  });
  return best;
}

// Tarjan's strongly connected components: each with more than one file (or a file importing itself) is a circle.
function circles() {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const on = new Set();
  const found = [];
  const visit = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
    }
    if (low.get(v) === idx.get(v)) {
      const scc = [];
      let w;
      do {
        w = stack.pop();
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(scc.map(rel).sort());
    }
  };
  for (const f of files) if (!idx.has(f)) visit(f);
  return found;
}

const found = circles();
const up = [];
const unlayered = files.filter((f) => layerOf(f) < 0).map(rel);
for (const [from, tos] of graph)
  for (const to of tos)
    if (layerOf(to) > layerOf(from) && layerOf(from) >= 0) up.push({ from: rel(from), to: rel(to) });

const forbidden = [];
for (const [from, tos] of graph)
  for (const to of tos) {
    const [f, t] = [rel(from), rel(to)];
    for (const rule of FORBIDDEN)
      if (under(f, rule.from) && !(rule.except && under(f, rule.except)) && under(t, rule.to))
        forbidden.push({ from: f, to: t, why: rule.why });
  }

const ok = found.length === 0 && up.length <= maxUp && unlayered.length === 0 && forbidden.length === 0;
if (values.json) {
  process.stdout.write(
    `${JSON.stringify({ ok, files: files.length, circles: found, upward: up, max_up: maxUp, forbidden, unlayered }, null, 2)}\n`,
  );
} else {
  const arrows = [...graph.values()].reduce((n, tos) => n + tos.length, 0);
  process.stdout.write(
    `imports: ${files.length} files, ${arrows} imports, ${found.length} circles, ` +
      `${up.length} upward (at most ${maxUp}), ${forbidden.length} forbidden\n`,
  );
  for (const c of found) process.stdout.write(`  circle: ${c.join(' → ')}\n`);
  for (const a of up) process.stdout.write(`  upward: ${a.from} → ${a.to}\n`);
  for (const a of forbidden) process.stdout.write(`  forbidden: ${a.from} → ${a.to} (${a.why})\n`);
  for (const f of unlayered) process.stdout.write(`  no layer: ${f} (add its folder to LAYERS)\n`);
}
process.exit(ok ? 0 : 1);
