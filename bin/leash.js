#!/usr/bin/env node
// The `leash` command: runs the bundled CLI (built by `npm ci` via the prepare script).
import module from 'node:module';

// Node ≥ 22.1 can cache compiled code between runs; older Node simply skips this.
module.enableCompileCache?.();
const { main } = await import('../dist/bundle/main.js');

process.exitCode = await main(process.argv.slice(2));
