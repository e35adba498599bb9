import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { masterKeyPath } from '../config/server-keys.js';
import { loadMasterKey } from '../credentials/master-key.js';
import { openDatabase, redactUrl } from '../db/database.js';
import { embeddedStatus } from '../db/embedded.js';
import { mintKey } from '../keys/vault-keys.js';
import { validatePolicy } from '../policy/compile.js';
import { readPolicyFile } from '../policy/file.js';
import { applyPolicy } from '../policies/store.js';
import { ruleSpecs } from '../pipeline/tool.js';
import { command, type CommandGroup } from './command.js';
import { catalog } from './runtime.js';
import { packageRoot } from './demo.js';

const init = command({
  name: '',
  summary:
    'Set up LEASH_HOME: directory, master key file (0600), database (started and migrated). Safe to re-run.',
  usage: 'init [--demo] [--json]',
  help: [
    '--demo      also apply the demo policy and print a demo vault key (sandbox use)',
    '--json      print what was set up as JSON',
  ],
  options: { demo: { type: 'boolean' }, json: { type: 'boolean' } },
  async run(ctx, v) {
    const config = ctx.config();
    await mkdir(config.home, { recursive: true, mode: 0o700 });
    await chmod(config.home, 0o700);
    if (!config.masterKey) await loadMasterKey(config, true);
    const handle = await openDatabase(config, { poolMax: 2 });
    let demo: { policy: string; version: number; key: string; key_id: string } | undefined;
    try {
      if (v.demo) {
        const doc = validatePolicy(
          await readPolicyFile(join(packageRoot(), 'examples', 'demo-policy.yaml')),
          ruleSpecs(catalog),
        );
        const applied = await applyPolicy(handle.db, doc);
        const key = await mintKey(handle.db, {
          agent: 'demo-agent',
          policy: doc.name,
          runId: 'demo',
          expiresAt: new Date(Date.now() + 86_400_000),
          label: 'leash init --demo',
        });
        demo = { policy: applied.name, version: applied.version, key: key.key, key_id: key.id };
      }
    } finally {
      await handle.close();
    }
    // Where the embedded cluster went: inside LEASH_HOME, unless its OS user cannot reach it (then say why).
    const place = config.databaseUrl ? undefined : await embeddedStatus(config.home);
    if (place?.note)
      ctx.warn(
        `the database's data is in ${place.dataDir}, outside LEASH_HOME: ${place.note}. To keep it with LEASH_HOME, ` +
          'use a LEASH_HOME that user can reach (not under /root), or DATABASE_URL',
      );
    const summary = {
      home: config.home,
      master_key: config.masterKey ? 'LEASH_MASTER_KEY' : masterKeyPath(config),
      database: redactUrl(handle.url),
      ...(place ? { data_dir: place.dataDir, data_in_home: place.inHome } : {}),
      ...(demo ? { demo } : {}),
    };
    if (v.json) return void ctx.json(summary);
    ctx.print(
      `LEASH_HOME   ${summary.home}\nmaster key   ${summary.master_key}\ndatabase     ${summary.database} (migrated)` +
        (place ? `\ndata         ${place.dataDir}${place.inHome ? '' : ' (outside LEASH_HOME)'}` : ''),
    );
    if (demo) {
      ctx.print(`demo policy  ${demo.policy} v${demo.version}\ndemo key     ${demo.key}`);
      ctx.io.stderr(
        'The demo key is shown once. Serve it with: leash serve --sandbox  (or: LEASH_VAULT_KEY=… leash mcp --sandbox)\n',
      );
    }
  },
});

export const initCommands: CommandGroup = {
  name: 'init',
  commands: [init],
};
