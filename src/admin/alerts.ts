import { sql } from 'kysely';
import type { Config } from '../config/config.js';
import type { Logger } from '../config/logger.js';
import type { Db } from '../db/database.js';
import { unknownOutcomes } from '../audit/unknown.js';
import type { PipelineEvent } from '../pipeline/run-tool.js';
import type { AuthFailure } from '../server/auth-throttle.js';
import { alertText, type AlertEvent } from './alert-events.js';

export interface Alerts {
  /** Feed pipeline events in; never blocks and never throws. */
  onEvent: (event: PipelineEvent) => void;
  /** Queue an alert (e.g. a revoke) for delivery off the call path. */
  notify: (event: AlertEvent) => void;
  /** Feed failed HTTP authentications in (the auth throttle's `onFailure`); one alert per window past the threshold. */
  onAuthFailure: (failure: AuthFailure) => void;
  /** Resolves when the queue is empty (tests) or after `ms`. */
  drain(ms?: number): Promise<void>;
  close(): Promise<void>;
}

const BURST_COUNT = 5;
const BURST_WINDOW_MS = 60_000;
const MAX_QUEUE = 1000;
const AUTH_ALERT_COUNT = 50;
const AUTH_ALERT_WINDOW_MS = 5 * 60_000;
const AUTH_MAX_ADDRESSES = 1000;
const RETRY_DELAYS_MS = [500, 2_000, 8_000];

/**
 * Webhook alerts (Slack incoming-webhook compatible `text`, plus the plain `event` object), delivered by a
 * background loop with retries. A slow or failing webhook only ever delays other alerts, never a tool call.
 */
export function startAlerts(o: {
  config: Config;
  db?: Db;
  log: Logger;
  stuckCheckMs?: number;
  fetchTimeoutMs?: number;
  /** Failed authentications (checked or throttled, all addresses) per window that raise `auth_failures`. */
  authFailureThreshold?: number;
  authFailureWindowMs?: number;
}): Alerts {
  const url = o.config.alertWebhookUrl;
  const queue: { event: AlertEvent; attempt: number; notBefore: number }[] = [];
  const capsSent = new Set<string>();
  const denials = new Map<string, number[]>();
  let stuckSentAt = 0;
  // Unknown outcomes already announced (bounded): a new one past the age is announced, with the others.
  const unknownSent = new Set<string>();
  const authThreshold = o.authFailureThreshold ?? AUTH_ALERT_COUNT;
  const authWindowMs = o.authFailureWindowMs ?? AUTH_ALERT_WINDOW_MS;
  const authWindow = (start: number) => ({
    start,
    failures: 0,
    throttled: 0,
    sent: false,
    kinds: new Set<AuthFailure['kind']>(),
    by: new Map<string, number>(),
  });
  let auth = authWindow(0);
  let closed = false;
  let wake: (() => void) | undefined;
  let idle: (() => void)[] = [];
  let inFlight = false;
  const stopping = new AbortController();

  const enqueue = (event: AlertEvent) => {
    if (!url || closed) return;
    if (queue.length >= MAX_QUEUE) queue.shift();
    queue.push({ event, attempt: 0, notBefore: 0 });
    wake?.();
  };

  async function deliver(event: AlertEvent): Promise<boolean> {
    try {
      const res = await fetch(url ?? '', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'leash-alerts' },
        body: JSON.stringify({ text: alertText(event), event: { ...event, at: new Date().toISOString() } }),
        signal: AbortSignal.any([AbortSignal.timeout(o.fetchTimeoutMs ?? 5_000), stopping.signal]),
      });
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  const loop = (async () => {
    while (!closed) {
      const now = Date.now();
      const i = queue.findIndex((q) => q.notBefore <= now);
      if (i < 0) {
        for (const f of idle) f();
        idle = [];
        const next = queue.reduce((m, q) => Math.min(m, q.notBefore), Infinity);
        await new Promise<void>((resolve) => {
          wake = resolve;
          if (Number.isFinite(next)) setTimeout(resolve, Math.max(next - now, 10)).unref();
        });
        wake = undefined;
        continue;
      }
      const [item] = queue.splice(i, 1);
      if (!item) continue;
      inFlight = true;
      const ok = await deliver(item.event);
      inFlight = false;
      if (!ok) {
        const delay = RETRY_DELAYS_MS[item.attempt];
        if (delay !== undefined)
          queue.push({ ...item, attempt: item.attempt + 1, notBefore: Date.now() + delay });
        else o.log.error('alert webhook failed after retries', { type: item.event.type });
      }
    }
  })();

  const stuckTimer =
    url && o.db
      ? setInterval(() => {
          void checkStuck();
          void checkUnknown();
        }, o.stuckCheckMs ?? 60_000)
      : undefined;
  stuckTimer?.unref();

  async function checkStuck() {
    if (!o.db || Date.now() - stuckSentAt < 3_600_000) return;
    try {
      const { rows } = await sql<{ n: number; oldest: Date | null }>`
        select count(*)::int as n, min(ts) as oldest from audit_unsettled
        where ts < now() - interval '5 minutes'`.execute(o.db);
      const r = rows[0];
      if (r && r.n > 0 && r.oldest) {
        stuckSentAt = Date.now();
        enqueue({ type: 'stuck_pending', rows: r.n, oldest: r.oldest.toISOString() });
      }
    } catch {
      // The database being away is reported by the call path; alerts stay quiet.
    }
  }

  async function checkUnknown() {
    if (!o.db) return;
    try {
      const age = o.config.unknownAlertAgeSeconds;
      const u = await unknownOutcomes(o.db, age);
      if (!u.oldest || u.ids.every((id) => unknownSent.has(id))) return;
      if (unknownSent.size > 10_000) unknownSent.clear();
      for (const id of u.ids) unknownSent.add(id);
      enqueue({
        type: 'unknown_outcomes',
        rows: u.count,
        oldest: u.oldest.toISOString(),
        older_than_seconds: age,
        audit_ids: u.ids,
      });
    } catch {
      // The database being away is reported by the call path; alerts stay quiet.
    }
  }

  return {
    onEvent(event) {
      if (!url) return;
      // Admission raises each trip and each alert once across replicas, so each is sent as it comes.
      if (event.type === 'tripwire') {
        enqueue({
          type: event.action === 'alert' ? 'tripwire_alert' : 'tripwire_tripped',
          wire: event.wire,
          policy: event.policy,
          metric: event.metric,
          figure: event.figure,
          limit: event.limit,
          window_seconds: event.window_seconds,
          scope_kind: event.scope_kind,
          scope: event.scope,
          mode: event.mode,
          action: event.action,
          ...(event.would ? { would: event.would } : {}),
          ...(event.revoked_keys !== undefined ? { revoked_keys: event.revoked_keys } : {}),
          key_id: event.key_id,
          agent: event.agent,
          tool: event.tool,
          audit_id: event.audit_id,
        });
        return;
      }
      if (event.type !== 'denied') return;
      const details = event.details;
      if (event.code === 'budget_exceeded' || event.code === 'request_limit_exceeded') {
        const scope = typeof details.scope === 'string' ? details.scope : 'unknown';
        const window = event.code === 'budget_exceeded' ? 'daily USD' : 'hourly request';
        const dedupe = `${scope}|${window}|${String(details.resets_at)}`;
        if (!capsSent.has(dedupe)) {
          capsSent.add(dedupe);
          enqueue({
            type: 'cap_reached',
            scope,
            window,
            key_id: event.key_id,
            agent: event.agent,
            tool: event.tool,
            details,
          });
        }
      }
      // A held call is the documented wait-and-retry flow, not a looping agent.
      if (event.key_id && event.code !== 'approval_required') {
        const now = Date.now();
        const times = (denials.get(event.key_id) ?? []).filter((t) => now - t < BURST_WINDOW_MS);
        times.push(now);
        denials.set(event.key_id, times);
        if (times.length === BURST_COUNT) {
          enqueue({
            type: 'denial_burst',
            key_id: event.key_id,
            agent: event.agent,
            denials: times.length,
            window_seconds: BURST_WINDOW_MS / 1000,
            last_code: event.code,
          });
        }
      }
    },
    notify: enqueue,
    onAuthFailure(f) {
      const now = Date.now();
      if (now - auth.start >= authWindowMs) auth = authWindow(now);
      if (f.throttled) auth.throttled++;
      else auth.failures++;
      auth.kinds.add(f.kind);
      if (auth.by.has(f.address) || auth.by.size < AUTH_MAX_ADDRESSES)
        auth.by.set(f.address, (auth.by.get(f.address) ?? 0) + 1);
      if (auth.sent || auth.failures + auth.throttled < authThreshold) return;
      auth.sent = true; // one alert per window, however long the attack goes on
      const event: AlertEvent = {
        type: 'auth_failures',
        failures: auth.failures,
        throttled: auth.throttled,
        window_seconds: authWindowMs / 1000,
        kinds: [...auth.kinds].sort(),
        addresses: auth.by.size,
        top: [...auth.by]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 5)
          .map(([address, attempts]) => ({ address, attempts })),
      };
      o.log.info('authentication failures past threshold', {
        failures: event.failures,
        throttled: event.throttled,
        addresses: event.addresses,
        top: event.top,
      });
      enqueue(event);
    },
    drain: (ms = 30_000) =>
      new Promise<void>((resolve) => {
        if (!queue.length && !inFlight) return resolve();
        idle.push(resolve);
        setTimeout(resolve, ms).unref();
      }),
    async close() {
      closed = true;
      stopping.abort();
      if (stuckTimer) clearInterval(stuckTimer);
      wake?.();
      await loop;
    },
  };
}
