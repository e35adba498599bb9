// `leash demo`: the embedded database, the demo policy and a demo key, then `serve` with sandbox vendors.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mintKey } from '../keys/vault-keys.js';
import { validatePolicy } from '../policy/compile.js';
import { readPolicyFile } from '../policy/file.js';
import { applyPolicy } from '../policies/store.js';
import { ruleSpecs } from '../pipeline/tool.js';
import { embeddedStatus, stopEmbedded } from '../db/embedded.js';
import { command, type CommandGroup, type Context } from './command.js';
import { catalog, openRuntime } from './runtime.js';
import { parsePort, serveHttp } from './serve.js';

/** The directory holding package.json (works from src/ under tsx and from dist/). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const demo = command({
  name: '',
  summary:
    'Try leash: start the database, apply the demo policy, mint a demo key and serve MCP with sandbox vendors.',
  usage: 'demo [--host 127.0.0.1] [--port 8787] [--json]',
  help: [
    '--port P    port (default 8787; 0 picks a free one)',
    '--json      print the key and URL as one JSON line on stdout',
  ],
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8787' },
    json: { type: 'boolean' },
  },
  async run(ctx, v) {
    const config = ctx.config();
    // Whether this demo starts the embedded database decides whether it stops it again on exit.
    const wasRunning = config.databaseUrl ? true : (await embeddedStatus(config.home)).running;
    const runtime = await openRuntime(config, { sandbox: true, poolMax: 2 });
    let key;
    try {
      const doc = validatePolicy(
        await readPolicyFile(join(packageRoot(), 'examples', 'demo-policy.yaml')),
        ruleSpecs(catalog),
      );
      await applyPolicy(runtime.handle.db, doc);
      key = await mintKey(runtime.handle.db, {
        agent: 'demo-agent',
        policy: doc.name,
        runId: `demo-${new Date().toISOString().slice(0, 10)}`,
        expiresAt: new Date(Date.now() + 24 * 3600_000),
        label: 'npm start demo key',
      });
    } finally {
      await runtime.close();
    }
    // A fresh admin token per demo run (unless one is configured) opens the console; it is printed below.
    const adminToken = config.adminToken ? undefined : randomBytes(24).toString('base64url');
    await serveHttp(
      ctx,
      {
        host: v.host,
        port: parsePort(v.port),
        sandbox: true,
        reconcileEverySeconds: 60,
        ...(adminToken ? { adminToken } : {}),
      },
      (url) => {
        if (v.json) {
          ctx.json({
            url: `${url}/mcp`,
            proxy_url: url,
            key: key.key,
            key_id: key.id,
            expires_at: key.expires_at,
            console_url: `${url}/console`,
            admin_token: adminToken ?? null, // null: the configured LEASH_ADMIN_TOKEN applies
          });
          return Promise.resolve();
        }
        const snippet = {
          mcpServers: {
            leash: { type: 'http', url: `${url}/mcp`, headers: { Authorization: `Bearer ${key.key}` } },
          },
        };
        ctx.print(
          [
            '',
            'leash demo is running (sandbox vendors: no real money or messages).',
            '',
            `  MCP endpoint  ${url}/mcp`,
            `  vendor SDKs   ${url}  (base URL for stripe-node/-python, twilio-node, resend-node; key = demo key)`,
            `  demo key      ${key.key}`,
            `  key id        ${key.id} (agent demo-agent, expires ${key.expires_at?.toISOString() ?? 'never'})`,
            `  console       ${url}/console`,
            `  admin token   ${adminToken ?? 'your LEASH_ADMIN_TOKEN'}  (paste it into the console's sign-in form)`,
            '',
            'Paste into your MCP client config (e.g. .mcp.json for Claude Code):',
            JSON.stringify(snippet, null, 2),
            '',
            `Try: refund pi_sandbox_alice, text +15555550123, email someone@example.com, then ask for the budget.`,
            `Watch: leash audit tail -f     Stop: Ctrl-C`,
            '',
          ].join('\n'),
        );
        return Promise.resolve();
      },
    );
    await stopDemoDatabase(ctx, wasRunning);
  },
});

/** After the demo: stop the embedded database it started, or say it is still running and how to stop it. */
async function stopDemoDatabase(ctx: Context, wasRunning: boolean) {
  const config = ctx.config();
  if (config.databaseUrl) return;
  if (wasRunning) {
    ctx.io.stderr(`the embedded database was already running and still is; stop it with: leash db stop\n`);
    return;
  }
  const stopped = await stopEmbedded(config.home).catch(() => false);
  ctx.io.stderr(
    stopped
      ? 'stopped the embedded database leash demo started\n'
      : 'the embedded database may still be running; stop it with: leash db stop\n',
  );
}

export const demoCommands: CommandGroup = {
  name: 'demo',
  commands: [demo],
};
