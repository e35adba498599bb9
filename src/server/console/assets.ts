import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/*
 * The console's browser code is typed modules in console/, which scripts/bundle.js (`npm run build`) bundles into
 * dist/bundle/console/: console.js, console.css and favicon.svg. Files, not a generated TS module holding them as
 * strings, so that type-checking and lint never need a build first (a missing generated module would fail both)
 * and the code is not shipped twice (dist/src and dist/bundle). The price is finding them from wherever this
 * module runs; the first of these places that has console.js wins:
 * - dist/bundle/*.js, esbuild's bundle of the CLI (bin/leash.js, the published package): ./console/
 * - dist/src/server/console/, tsc's output (bench/): ../../../bundle/console/
 * - src/server/console/, the TS sources as vitest runs them: ../../../dist/bundle/console/ (the test script builds
 *   first; after changing console/ without it, a targeted vitest run serves the previous build)
 * Each is served under a name with its content's hash and cached for a year: a new build is a new URL.
 */
const PLACES = ['./console/', '../../../bundle/console/', '../../../dist/bundle/console/'];

const FILES = {
  script: { name: 'console.js', type: 'text/javascript; charset=utf-8' },
  style: { name: 'console.css', type: 'text/css; charset=utf-8' },
  icon: { name: 'favicon.svg', type: 'image/svg+xml' },
} as const;

export interface ConsoleAsset {
  type: string;
  body: Buffer;
}

export interface ConsoleAssets {
  /** The URLs the pages link to. */
  urls: AssetUrls;
  /** By URL path, e.g. /console/assets/console.3f2a9c01d4e5.js. */
  files: Map<string, ConsoleAsset>;
}

export type AssetUrls = Record<keyof typeof FILES, string>;

/** Reads the built assets (`from` is this module's URL unless a test says otherwise), or says where it looked. */
export function loadConsoleAssets(from: string = import.meta.url): ConsoleAssets | { error: string } {
  const dirs = PLACES.map((p) => fileURLToPath(new URL(p, from)));
  const dir = dirs.find((d) => existsSync(join(d, FILES.script.name)));
  if (!dir)
    return {
      error: `The console's browser code is not built: run npm run build (no console.js in ${dirs.join(', ')}).`,
    };
  const files = new Map<string, ConsoleAsset>();
  const load = (f: { name: string; type: string }) => {
    const body = readFileSync(join(dir, f.name));
    const hash = createHash('sha256').update(body).digest('hex').slice(0, 12);
    const ext = extname(f.name);
    const path = `/console/assets/${basename(f.name, ext)}.${hash}${ext}`;
    files.set(path, { type: f.type, body });
    return path;
  };
  return { urls: { script: load(FILES.script), style: load(FILES.style), icon: load(FILES.icon) }, files };
}
