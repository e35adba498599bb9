// Backtests a policy's tripwires over past calls (`leash policies replay`): when each wire would have tripped, for
// which scope, and what it would have stopped, as Stripe Radar backtests a rule. The same figures the admission
// statement measures (leash_tripwires.sql), from the calls in time order: sliding windows, this call included, a
// tripped call not counted, a paused scope refusing everything after (nobody resumes it in a backtest). Pure.
import { tripwiresFor, type TripwireKey } from './tripwires.js';
import type { Tripwire } from './types.js';

/** One past call as the backtest sees it. */
export interface BacktestCall {
  id: string;
  ts: Date;
  key: TripwireKey;
  /**
   * allowed: counted by calls, spend and recipients; denied: a refusal denials_per_minute counts; none: neither
   * (held for a person, or refused for the key's own state or leash's trouble).
   */
  side: 'allowed' | 'denied' | 'none';
  usd_micros: number;
  recipients: readonly string[];
}

export interface WireTrip {
  wire: string;
  metric: Tripwire['metric'];
  then: Tripwire['then'];
  mode: Tripwire['mode'];
  scope_kind: Tripwire['per'];
  scope: string;
  /** The call that went over the line. */
  at: string;
  audit_id: string;
  figure: number;
  limit: number;
  /** enforce + pause|revoke: the calls of the scope after the trip (the trip included) that would have been refused. */
  stopped_calls: number;
  stopped_usd_micros: number;
}

export interface WireBacktest {
  /** Each wire of the policy, with how often it went over its line (trips, alerts or shadow records). */
  wires: {
    wire: string;
    metric: Tripwire['metric'];
    limit: number;
    per: Tripwire['per'];
    then: Tripwire['then'];
    mode: Tripwire['mode'];
    over: number;
  }[];
  /** Every time a wire went over its line: an enforced trip, an alert (once per window per scope), or a shadow record. */
  trips: WireTrip[];
  /** Calls that an enforced trip would have stopped (refused tripwire_tripped or key_paused afterwards). */
  stopped_calls: number;
  stopped_usd_micros: number;
  note: string;
}

/** Longest trip list kept (the counts cover all). */
const MAX_TRIPS = 200;

interface Windowed {
  /** (ts ms, value) in time order: calls and denials count 1, spend its micro-USD. */
  events: { t: number; v: number }[];
  sum: number;
  /** distinct_recipients_per_hour: when each recipient was last reached. */
  recipients: Map<string, number>;
  /** When this wire last alerted for the scope (alert and warn alert once per window). */
  alertedAt: number;
}

export function createWireBacktest(policy: { name: string; tripwires: readonly Tripwire[] }) {
  const out: WireBacktest = {
    wires: policy.tripwires.map((w) => ({
      wire: w.name,
      metric: w.metric,
      limit: w.limit,
      per: w.per,
      then: w.then,
      mode: w.mode,
      over: 0,
    })),
    trips: [],
    stopped_calls: 0,
    stopped_usd_micros: 0,
    note:
      'wires measured over the calls replayed, in time order, as the candidate decides them; a scope a wire pauses ' +
      'stays paused to the end (no operator resumes it here); a call the candidate now allows that was refused has ' +
      'no admitted USD to count',
  };
  const state = new Map<string, Windowed>();
  /** Paused (or revoked) scopes: `kind:id` → the trip that paused it. */
  const paused = new Map<string, WireTrip>();
  let lastTs = -Infinity;

  const windowOf = (key: string): Windowed => {
    let s = state.get(key);
    if (!s) state.set(key, (s = { events: [], sum: 0, recipients: new Map(), alertedAt: -Infinity }));
    return s;
  };
  const slide = (s: Windowed, since: number) => {
    let n = 0;
    while (n < s.events.length && s.events[n]!.t <= since) s.sum -= s.events[n++]!.v;
    if (n) s.events.splice(0, n);
  };

  function add(call: BacktestCall): void {
    if (call.side === 'none') return;
    // Calls come in time order; one a clock put a moment earlier counts at the latest time seen.
    const t = Math.max(call.ts.getTime(), lastTs);
    lastTs = t;
    const checks = tripwiresFor(policy, call.key);
    // A scope an earlier trip paused refuses the call: counted as stopped by that trip, measured by no wire.
    for (const c of checks) {
      const trip = paused.get(`${c.kind}:${c.id}`);
      if (trip) {
        trip.stopped_calls++;
        out.stopped_calls++;
        if (call.side === 'allowed') {
          trip.stopped_usd_micros += call.usd_micros;
          out.stopped_usd_micros += call.usd_micros;
        }
        return;
      }
    }
    let tripped = false;
    checks.forEach((c, i) => {
      if (tripped) return;
      const metric = c.metric;
      if ((metric === 'denials_per_minute') !== (call.side === 'denied')) return;
      const s = windowOf(`${i}|${c.kind}:${c.id}`);
      const since = t - c.seconds * 1000;
      let figure: number;
      if (metric === 'distinct_recipients_per_hour') {
        for (const [r, at] of s.recipients) if (at <= since) s.recipients.delete(r);
        figure = s.recipients.size + call.recipients.filter((r) => !s.recipients.has(r)).length;
      } else {
        slide(s, since);
        figure = s.sum + (metric === 'spend_usd_per_10m' ? call.usd_micros : 1);
      }
      if (figure > c.limit) {
        const wire = out.wires[i]!;
        const enforced = c.mode === 'enforce' && c.then !== 'alert';
        const alerting = !enforced && c.mode !== 'shadow';
        // alert and warn: once per window per scope, as tripwire_alerts keeps it.
        if (!alerting || s.alertedAt <= since) {
          if (alerting) s.alertedAt = t;
          wire.over++;
          const trip: WireTrip = {
            wire: c.wire,
            metric,
            then: c.then,
            mode: c.mode,
            scope_kind: c.kind,
            scope: c.id,
            at: call.ts.toISOString(),
            audit_id: call.id,
            figure,
            limit: c.limit,
            stopped_calls: enforced ? 1 : 0,
            stopped_usd_micros: enforced && call.side === 'allowed' ? call.usd_micros : 0,
          };
          if (out.trips.length < MAX_TRIPS) out.trips.push(trip);
          if (enforced) {
            paused.set(`${c.kind}:${c.id}`, trip);
            out.stopped_calls++;
            out.stopped_usd_micros += trip.stopped_usd_micros;
            tripped = true;
          }
        }
      }
    });
    // A call a wire tripped on is refused: not counted. Otherwise every wire of its side counts it.
    if (tripped) return;
    checks.forEach((c, i) => {
      if ((c.metric === 'denials_per_minute') !== (call.side === 'denied')) return;
      const s = windowOf(`${i}|${c.kind}:${c.id}`);
      if (c.metric === 'distinct_recipients_per_hour') {
        for (const r of call.recipients) s.recipients.set(r, t);
        return;
      }
      const v = c.metric === 'spend_usd_per_10m' ? call.usd_micros : 1;
      s.events.push({ t, v });
      s.sum += v;
    });
  }

  return { add, result: (): WireBacktest => out };
}
