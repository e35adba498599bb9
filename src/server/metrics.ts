// Prometheus metrics for `leash serve`: per-call counters and latencies from pipeline events, budget and
// unsettled-row gauges read from Postgres at scrape time (so every replica reports the shared state).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Db } from '../db/database.js';
import type { PipelineEvent } from '../pipeline/deps.js';
import type { AuthFailure, AuthThrottle } from './auth-throttle.js';
import { adminAuthorized } from '../admin/admin-auth.js';
import { sendJson, type RouteHandler } from '../http/kit.js';

/** Seconds: admission is ~1 ms, vendor calls 50 ms – 20 s. */
const FAST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const VENDOR_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20];
const GAUGES_NAMED_LIKE_COUNTERS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

export interface Metrics {
  registry: Registry;
  /** Subscribe to the pipeline's events (through a fan-out with alerts and the call log). */
  onEvent: (event: PipelineEvent) => void;
  /** Counts an alert that could not be delivered after its retries. */
  alertDeliveryFailed: () => void;
  /** Counts a failed HTTP authentication (the auth throttle's `onFailure`), by kind and reason only. */
  authFailed: (failure: AuthFailure) => void;
  /** The exposition text, with the database gauges read now. */
  render(): Promise<string>;
  contentType: string;
}

export function createMetrics(o: { db: Db }): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client's sums of the labelled gauges are gauges named like counters (promtool refuses them); the labelled
  // ones stay (`sum(nodejs_active_handles)` is the total).
  for (const name of GAUGES_NAMED_LIKE_COUNTERS) registry.removeSingleMetric(name);
  const calls = new Counter({
    name: 'leash_calls_total',
    help: 'Tool calls by tool, front door, decision and denial code ("none" when allowed)',
    labelNames: ['tool', 'door', 'decision', 'code'] as const,
    registers: [registry],
  });
  const callSeconds = new Histogram({
    name: 'leash_call_duration_seconds',
    help: 'Whole call, authentication to answer',
    labelNames: ['door'] as const,
    buckets: VENDOR_BUCKETS,
    registers: [registry],
  });
  const admitSeconds = new Histogram({
    name: 'leash_admission_duration_seconds',
    help: 'The admission round trip (key re-check, reservations, audit row)',
    buckets: FAST_BUCKETS,
    registers: [registry],
  });
  const vendorSeconds = new Histogram({
    name: 'leash_vendor_duration_seconds',
    help: 'The vendor call',
    labelNames: ['tool'] as const,
    buckets: VENDOR_BUCKETS,
    registers: [registry],
  });
  const authFailures = new Counter({
    name: 'leash_auth_failures_total',
    help: 'Failed HTTP authentications: kind (vault_key, admin_token) and reason (malformed, wrong, throttled)',
    labelNames: ['kind', 'reason'] as const,
    registers: [registry],
  });
  const alertsFailed = new Counter({
    name: 'leash_alert_deliveries_failed_total',
    help: 'Alerts the webhook did not accept after all retries',
    registers: [registry],
  });
  const spent = new Gauge({
    name: 'leash_policy_spent_usd',
    help: 'USD spent today (UTC) under each policy with a daily cap, across every replica',
    labelNames: ['policy'] as const,
    registers: [registry],
  });
  const reserved = new Gauge({
    name: 'leash_policy_reserved_usd',
    help: 'USD reserved today (UTC) by calls not yet settled, per policy with a daily cap',
    labelNames: ['policy'] as const,
    registers: [registry],
  });
  const unsettled = new Gauge({
    name: 'leash_unsettled_rows',
    help: 'Admitted calls whose outcome or cost is not settled yet (reconcile settles them)',
    registers: [registry],
  });
  const dbUp = new Gauge({
    name: 'leash_metrics_database_up',
    help: '1 when the last scrape could read the database gauges',
    registers: [registry],
  });

  async function readDatabase() {
    try {
      const today = new Date(new Date().toISOString().slice(0, 10) + 'T00:00:00Z');
      const [windows, pending] = await Promise.all([
        o.db
          .selectFrom('spend_windows')
          .select(['scope', 'spent_micros', 'reserved_micros'])
          .where('kind', '=', 'usd_day')
          .where('window_start', '=', today)
          .where('scope', 'like', 'policy:%')
          .execute(),
        sql<{ n: number }>`select count(*)::int as n from audit_unsettled`.execute(o.db),
      ]);
      spent.reset();
      reserved.reset();
      for (const w of windows) {
        const policy = w.scope.slice('policy:'.length);
        spent.set({ policy }, Number(w.spent_micros) / 1e6);
        reserved.set({ policy }, Number(w.reserved_micros) / 1e6);
      }
      unsettled.set(pending.rows[0]?.n ?? 0);
      dbUp.set(1);
    } catch {
      dbUp.set(0);
    }
  }

  return {
    registry,
    contentType: registry.contentType,
    onEvent(e) {
      if (e.type !== 'finished') return;
      calls.inc({ tool: e.tool, door: e.door, decision: e.decision, code: e.code ?? 'none' });
      callSeconds.observe({ door: e.door }, e.ms / 1000);
      if (e.admit_ms !== null) admitSeconds.observe(e.admit_ms / 1000);
      if (e.vendor_ms !== null) vendorSeconds.observe({ tool: e.tool }, e.vendor_ms / 1000);
    },
    alertDeliveryFailed: () => alertsFailed.inc(),
    authFailed: (f) => authFailures.inc({ kind: f.kind, reason: f.throttled ? 'throttled' : f.reason }),
    async render() {
      await readDatabase();
      return registry.metrics();
    },
  };
}

async function answer(metrics: Metrics, res: ServerResponse) {
  const text = await metrics.render();
  res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
  res.end(text);
}

/**
 * GET /metrics on the main server, behind the admin token (LEASH_ADMIN_TOKEN); without a token configured it
 * answers 404 and says how to turn it on. Wrong tokens count against the address like wrong vault keys.
 */
export function metricsRoute(
  metrics: Metrics,
  adminToken: string | undefined,
  throttle?: AuthThrottle,
): RouteHandler {
  return async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    if (url.pathname !== '/metrics') return false;
    if (!adminToken) {
      sendJson(res, 404, {
        error: '/metrics needs LEASH_ADMIN_TOKEN (send it as a bearer token), or serve it on --metrics-port',
      });
      return true;
    }
    if (!adminAuthorized(req, res, adminToken, throttle)) return true;
    await answer(metrics, res);
    return true;
  };
}

/** `--metrics-port`: /metrics alone, without a token, on a loopback listener of its own. */
export async function startMetricsServer(
  metrics: Metrics,
  port: number,
  host = '127.0.0.1',
): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD'))
      return sendJson(res, 404, { error: 'only GET /metrics here' });
    answer(metrics, res).catch(() => sendJson(res, 500, { error: 'internal error' }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${bound}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
