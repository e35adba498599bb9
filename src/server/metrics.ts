// Prometheus metrics for `leash serve`: per-call counters and latencies and per-policy refusals from pipeline events;
// the gauges of shared state (cap use, spend, unsettled rows, approvals) are read from Postgres at scrape time.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Db } from '../db/database.js';
import type { PipelineEvent } from '../pipeline/deps.js';
import { REFUSALS } from '../pipeline/refusals.js';
import type { AuthFailure, AuthThrottle } from './auth-throttle.js';
import { operatorAuthorized, operatorDoors } from '../admin/admin-auth.js';
import { sendJson, type RouteHandler } from '../http/kit.js';
import { MAX_POLICY_SERIES, registerDatabaseGauges } from './metrics-database.js';

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
  /** The exposition text, with the database gauges read now (see metrics-database.ts). */
  render(): Promise<string>;
  contentType: string;
}

/**
 * Policy names as labels: operators name policies, so they are few, but a process keeps at most MAX_POLICY_SERIES of
 * them; later ones count as `_other` (no policy name starts with `_`).
 */
function boundedPolicies(): (policy: string) => string {
  const seen = new Set<string>();
  return (policy) => {
    if (seen.has(policy)) return policy;
    if (seen.size >= MAX_POLICY_SERIES) return '_other';
    seen.add(policy);
    return policy;
  };
}

/**
 * Wire names as labels: at most MAX_WIRES_PER_POLICY per policy (a policy has at most 20 wires, but a process may see
 * several versions of it); later ones count as `_other` (no wire name starts with `_`).
 */
function boundedWires(): (policy: string, wire: string) => string {
  const seen = new Map<string, Set<string>>();
  return (policy, wire) => {
    const wires = seen.get(policy) ?? new Set<string>();
    seen.set(policy, wires);
    if (wires.has(wire)) return wire;
    if (wires.size >= MAX_WIRES_PER_POLICY) return '_other';
    wires.add(wire);
    return wire;
  };
}
const MAX_WIRES_PER_POLICY = 40;

export function createMetrics(o: { db: Db; databaseTimeoutMs?: number }): Metrics {
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
    help: 'Failed HTTP authentications: kind (vault_key, oauth_token, admin_token) and reason (malformed, wrong, throttled)',
    labelNames: ['kind', 'reason'] as const,
    registers: [registry],
  });
  const alertsFailed = new Counter({
    name: 'leash_alert_deliveries_failed_total',
    help: 'Alerts the webhook did not accept after all retries',
    registers: [registry],
  });
  const denials = new Counter({
    name: 'leash_policy_denials_total',
    help: 'Refused calls by policy and refusal code, as written to the audit log (held calls are not refusals)',
    labelNames: ['policy', 'code'] as const,
    registers: [registry],
  });
  const policyLabel = boundedPolicies();
  const trips = new Counter({
    name: 'leash_tripwire_trips_total',
    help:
      'Tripwires over their line, by policy, wire, then (pause, revoke, alert) and mode (enforce, warn); shadow ' +
      'wires are recorded on the audit row only',
    labelNames: ['policy', 'wire', 'then', 'mode'] as const,
    registers: [registry],
  });
  const wireLabel = boundedWires();
  const shadowDisagreements = new Counter({
    name: 'leash_shadow_disagreements_total',
    help:
      "Live calls a policy's shadow version (policies apply --shadow) would have decided otherwise, by policy and what " +
      'the call would now be (now_denied, now_tripped, now_held, now_allowed, or undecidable)',
    labelNames: ['policy', 'disagreement'] as const,
    registers: [registry],
  });
  registerDatabaseGauges(registry, o.db, o.databaseTimeoutMs);

  return {
    registry,
    contentType: registry.contentType,
    onEvent(e) {
      // A refusal with no policy (no valid key) is counted in leash_calls_total alone.
      if (e.type === 'denied' && e.policy !== null && e.code !== 'approval_required')
        denials.inc({
          policy: policyLabel(e.policy),
          code: Object.hasOwn(REFUSALS, e.code) ? e.code : 'other',
        });
      if (e.type === 'tripwire') {
        const policy = policyLabel(e.policy);
        trips.inc({
          policy,
          wire: policy === '_other' ? '_other' : wireLabel(e.policy, e.wire),
          then: e.would ?? e.action,
          mode: e.mode,
        });
      }
      if (e.type === 'shadow')
        shadowDisagreements.inc({ policy: policyLabel(e.policy), disagreement: e.disagreement });
      if (e.type !== 'finished') return;
      calls.inc({ tool: e.tool, door: e.door, decision: e.decision, code: e.code ?? 'none' });
      callSeconds.observe({ door: e.door }, e.ms / 1000);
      if (e.admit_ms !== null) admitSeconds.observe(e.admit_ms / 1000);
      if (e.vendor_ms !== null) vendorSeconds.observe({ tool: e.tool }, e.vendor_ms / 1000);
    },
    alertDeliveryFailed: () => alertsFailed.inc(),
    authFailed: (f) => authFailures.inc({ kind: f.kind, reason: f.throttled ? 'throttled' : f.reason }),
    render: () => registry.metrics(),
  };
}

async function answer(metrics: Metrics, res: ServerResponse) {
  const text = await metrics.render();
  res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
  res.end(text);
}

/**
 * GET /metrics on the main server, behind an operator's token (`leash operators add`) or the admin token
 * (LEASH_ADMIN_TOKEN), as /admin is; while neither exists it answers 404 and says how to turn it on. Wrong tokens
 * count against the address like wrong vault keys.
 */
export function metricsRoute(
  metrics: Metrics,
  o: { db: Db; adminToken: string | undefined; throttle?: AuthThrottle | undefined },
): RouteHandler {
  const doorsOn = operatorDoors(o.db, o.adminToken);
  return async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    if (url.pathname !== '/metrics') return false;
    if (!(await doorsOn())) {
      sendJson(res, 404, {
        error:
          '/metrics needs an operator (leash operators add NAME) or LEASH_ADMIN_TOKEN (send the token as a bearer ' +
          'token), or serve it on --metrics-port',
      });
      return true;
    }
    if (!(await operatorAuthorized(req, res, o.db, o.adminToken, o.throttle))) return true;
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
