// `leash serve`: MCP over Streamable HTTP and every HTTP route, with the loops behind them, until a signal.
import { startPartitionLoop } from '../audit/partitions.js';
import { startReconcileLoop } from '../pipeline/reconcile.js';
import { createAuthThrottle } from '../server/auth-throttle.js';
import { startHttpServer } from '../server/http.js';
import { restRoutes } from '../server/rest.js';
import { vendorApis } from '../../tools/index.js';
import { consoleRoutes } from '../server/console/routes.js';
import { operatorDoors } from '../admin/admin-auth.js';
import { adminRoutes } from '../admin/routes.js';
import { startAlerts } from '../admin/alerts.js';
import { linkKey } from '../approvals/link.js';
import { approvalLinkRoutes } from '../approvals/link-routes.js';
import { startApprovalLoop, type ApprovalLoop } from '../approvals/loop.js';
import { createMetrics, metricsRoute, startMetricsServer } from '../server/metrics.js';
import { callLog, fanOut, onAlertFailure } from './events.js';
import { CliError, EXIT, command, type CommandGroup, type Context } from './command.js';
import { openRuntime, warnIfUnkeyed } from './runtime.js';

const serveOptions = {
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8787' },
  sandbox: { type: 'boolean' },
  'reconcile-every': { type: 'string', default: '60' },
  'metrics-port': { type: 'string' },
} as const;

/** A port flag as a number; a bad one is a usage error naming the flag. */
export function parsePort(value: string, flag = '--port'): number {
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

/**
 * Serves MCP and every HTTP route (vendor REST APIs, /admin, the console, approval links, /metrics) until SIGINT or
 * SIGTERM; `after` runs once the server listens (the demo prints its key there).
 */
export async function serveHttp(
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
  // audit_log's monthly partitions, created ahead (now and every 6 h) so rows never pile up in the default one.
  const partitions = startPartitionLoop(runtime.deps.db, runtime.deps.log);
  const web = consoleRoutes({ db: runtime.deps.db, config, alerts, throttle });
  let http;
  try {
    http = await startHttpServer(runtime.deps, {
      host: o.host,
      port: o.port,
      routes: [
        metricsRoute(metrics, { db: runtime.deps.db, adminToken: config.adminToken, throttle }),
        adminRoutes(runtime.deps, config, alerts, throttle),
        approvalLinkRoutes(runtime.deps.db, signing),
        web,
        // The vendors' own REST paths at the root (stripe-node has no path-prefix option): `/v1/…`, `/2010-04-01/…`, `/emails`.
        restRoutes(runtime.deps, { apis: vendorApis, throttle }),
      ],
      throttle,
    });
  } catch (error) {
    await partitions.stop();
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
  // The console, /admin and /metrics are on while the admin token is set or an operator is active (admin-auth.ts).
  const doorsOn = await operatorDoors(runtime.deps.db, config.adminToken)().catch(() => false);
  if (ctx.jsonMode && !after)
    ctx.json({
      url: http.url,
      mcp_url: `${http.url}/mcp`,
      metrics_url: metricsServer?.url ?? (doorsOn ? `${http.url}/metrics` : null),
      console_url: doorsOn ? `${http.url}/console` : null,
    });
  ctx.io.stderr(
    doorsOn
      ? `operator console at ${http.url}/console\n`
      : 'operator console off until an operator exists (leash operators add NAME) or LEASH_ADMIN_TOKEN is set\n',
  );
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
    await partitions.stop();
    await approvals.loop?.stop();
    await alerts.close();
    await runtime.close();
  });
}

const serve = command({
  name: '',
  summary:
    'Serve MCP over Streamable HTTP at /mcp (vault key as Authorization: Bearer) and /healthz; /admin, /metrics ' +
    'and the operator console (/console) too once an operator exists (leash operators add NAME) or ' +
    'LEASH_ADMIN_TOKEN is set.',
  usage:
    'serve [--host 127.0.0.1] [--port 8787] [--sandbox] [--reconcile-every 60] [--metrics-port P] [--json]',
  help: [
    '--host H    interface to listen on (default 127.0.0.1)',
    '--port P    port (default 8787; 0 picks a free one)',
    '--sandbox   route vendor calls to built-in local fakes',
    '--reconcile-every S  settle pending rows and late vendor prices every S seconds (default 60; 0 = off)',
    '--metrics-port P  also serve Prometheus /metrics on 127.0.0.1:P without a token',
    '                  (on the main port, /metrics needs an operator token or LEASH_ADMIN_TOKEN as a bearer token)',
    '--json  print {url, mcp_url, metrics_url, console_url} on stdout once listening',
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

export const serveCommands: CommandGroup = {
  name: 'serve',
  commands: [serve],
};
