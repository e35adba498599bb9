import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mintKey } from '../keys/vault-keys.js';
import { validatePolicy } from '../policy/compile.js';
import { readPolicyFile } from '../policy/file.js';
import { applyPolicy } from '../policies/store.js';
import { startReconcileLoop } from '../pipeline/reconcile.js';
import { ruleSpecs } from '../pipeline/tool.js';
import { createAuthThrottle } from '../server/auth-throttle.js';
import { startHttpServer } from '../server/http.js';
import { restRoutes } from '../server/rest.js';
import { vendorApis } from '../../tools/index.js';
import { consoleRoutes } from '../server/console/routes.js';
import { adminRoutes } from '../admin/routes.js';
import { startAlerts } from '../admin/alerts.js';
import { linkKey } from '../approvals/link.js';
import { approvalLinkRoutes } from '../approvals/link-routes.js';
import { startApprovalLoop, type ApprovalLoop } from '../approvals/loop.js';
import { embeddedStatus, stopEmbedded } from '../db/embedded.js';
import { createMetrics, metricsRoute, startMetricsServer } from '../server/metrics.js';
import { callLog, fanOut, onAlertFailure } from './events.js';
import { CliError, EXIT, command, type CommandGroup, type Context } from './command.js';
import { catalog, openRuntime, warnIfUnkeyed } from './runtime.js';

const serveOptions = {
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8787' },
  sandbox: { type: 'boolean' },
  'reconcile-every': { type: 'string', default: '60' },
  'metrics-port': { type: 'string' },
} as const;

function parsePort(value: string, flag = '--port'): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new CliError(`${flag} must be 0-65535, got '${value}'`, EXIT.usage);
  return port;
}

/** Waits for SIGINT/SIGTERM, then closes what was opened. */
function untilSignal(close: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void close().finally(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

async function serveHttp(
  ctx: Context,
  o: {
    host: string;
    port: number;
    sandbox: boolean;
    reconcileEverySeconds: number;
    adminToken?: string;
    metricsPort?: number;
  },
  after?: (url: string) => Promise<void>,
) {
  // `leash demo` brings its own admin token when none is configured, so its console can be opened.
  const config = o.adminToken ? Object.freeze({ ...ctx.config(), adminToken: o.adminToken }) : ctx.config();
  const runtime = await openRuntime(config, { sandbox: o.sandbox, poolMax: Math.max(config.poolMax, 16) });
  const metrics = createMetrics({ db: runtime.handle.db });
  const alertLog = onAlertFailure(runtime.deps.log, metrics.alertDeliveryFailed);
  const alerts = startAlerts({ config, db: runtime.handle.db, log: alertLog });
  // A held call kicks the approval loop, which announces the request with its signed link.
  const approvals: { loop?: ApprovalLoop } = {}; // started once the server knows its URL
  const held = (e: { type: string; code?: string | null }) => {
    if (e.type === 'denied' && e.code === 'approval_required') approvals.loop?.kick();
  };
  runtime.deps.onEvent = fanOut(alerts.onEvent, metrics.onEvent, callLog(runtime.deps.log), held);
  const signing = linkKey({ linkSecret: config.approvalLinkSecret, adminToken: config.adminToken });
  // One limiter for /mcp and /admin, so wrong vault keys and wrong admin tokens share an address's allowance.
  const throttle = createAuthThrottle({
    maxFailures: config.authFailuresPerMinute,
    windowMs: 60_000,
    trustProxyHops: config.trustProxyHops,
    onFailure: (failure) => {
      alerts.onAuthFailure(failure);
      metrics.authFailed(failure);
    },
  });
  const reconciler =
    o.reconcileEverySeconds > 0
      ? startReconcileLoop(runtime.deps, { everyMs: o.reconcileEverySeconds * 1000 })
      : undefined;
  const web = consoleRoutes({ db: runtime.deps.db, config, alerts, throttle });
  let http;
  try {
    http = await startHttpServer(runtime.deps, {
      host: o.host,
      port: o.port,
      routes: [
        metricsRoute(metrics, config.adminToken, throttle),
        adminRoutes(runtime.deps, config, alerts, throttle),
        approvalLinkRoutes(runtime.deps.db, signing),
        web,
        // The vendors' own REST paths at the root (stripe-node has no path-prefix option): `/v1/…`, `/2010-04-01/…`, `/emails`.
        restRoutes(runtime.deps, { apis: vendorApis, throttle }),
      ],
      throttle,
    });
  } catch (error) {
    await runtime.close();
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE')
      throw new CliError(`port ${o.port} on ${o.host} is in use; pass --port`);
    throw error;
  }
  const metricsServer =
    o.metricsPort !== undefined
      ? await startMetricsServer(metrics, o.metricsPort).catch(async (error: unknown) => {
          await http.close();
          await runtime.close();
          throw error;
        })
      : undefined;
  ctx.io.stderr(`leash serving MCP at ${http.url}/mcp${o.sandbox ? ' (sandbox vendors)' : ''}\n`);
  ctx.io.stderr(`vendor REST APIs (Stripe, Twilio, Resend SDKs) at base URL ${http.url}\n`);
  if (metricsServer) ctx.io.stderr(`metrics at ${metricsServer.url}\n`);
  if (ctx.jsonMode && !after)
    ctx.json({
      url: http.url,
      mcp_url: `${http.url}/mcp`,
      metrics_url: metricsServer?.url ?? (config.adminToken ? `${http.url}/metrics` : null),
    });
  if (config.adminToken) ctx.io.stderr(`operator console at ${http.url}/console\n`);
  approvals.loop = startApprovalLoop({
    db: runtime.deps.db,
    log: runtime.deps.log,
    notify: alerts.notify,
    announce: Boolean(config.alertWebhookUrl),
    baseUrl: config.publicUrl ?? http.url,
    linkKey: signing,
  });
  if (after) await after(http.url);
  await untilSignal(async () => {
    web.close();
    await http.close();
    await metricsServer?.close();
    await reconciler?.stop();
    await approvals.loop?.stop();
    await alerts.close();
    await runtime.close();
  });
}

const serve = command({
  name: '',
  summary:
    'Serve MCP over Streamable HTTP at /mcp (vault key as Authorization: Bearer), plus /healthz and /admin.',
  usage:
    'serve [--host 127.0.0.1] [--port 8787] [--sandbox] [--reconcile-every 60] [--metrics-port P] [--json]',
  help: [
    '--host H    interface to listen on (default 127.0.0.1)',
    '--port P    port (default 8787; 0 picks a free one)',
    '--sandbox   route vendor calls to built-in local fakes',
    '--reconcile-every S  settle pending rows and late vendor prices every S seconds (default 60; 0 = off)',
    '--metrics-port P  also serve Prometheus /metrics on 127.0.0.1:P without a token',
    '                  (on the main port, /metrics needs LEASH_ADMIN_TOKEN as a bearer token)',
    '--json  print {url, mcp_url, metrics_url} on stdout once listening',
  ],
  options: serveOptions,
  async run(ctx, v) {
    const every = Number(v['reconcile-every']);
    if (!Number.isFinite(every) || every < 0)
      throw new CliError('--reconcile-every must be a number of seconds (0 turns it off)', EXIT.usage);
    warnIfUnkeyed(ctx, ctx.config());
    await serveHttp(ctx, {
      host: v.host,
      port: parsePort(v.port),
      sandbox: Boolean(v.sandbox),
      reconcileEverySeconds: every,
      ...(v['metrics-port'] !== undefined
        ? { metricsPort: parsePort(v['metrics-port'], '--metrics-port') }
        : {}),
    });
  },
});

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

export const serveCommands: CommandGroup = {
  name: 'serve',
  commands: [serve],
};
export const demoCommands: CommandGroup = {
  name: 'demo',
  commands: [demo],
};
