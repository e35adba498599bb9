// Tripwires: a policy's lines on how fast or how much a scope (key, run, agent, policy) may go, measured exactly in
// the admission statement (src/db/functions/leash_tripwires.sql). Here: compiling them, and what one call sends to
// admission for them. Pure.
import { usdToMicros } from './money.js';
import { TRIPWIRE_METRICS, tripwireName, type TripwireInput } from './schema.js';
import type { PolicyFacts, Tripwire, TripwireMetric } from './types.js';

/** Each metric's sliding window, in seconds. */
export const TRIPWIRE_WINDOWS: Readonly<Record<TripwireMetric, number>> = {
  calls_per_minute: 60,
  denials_per_minute: 60,
  spend_usd_per_10m: 600,
  distinct_recipients_per_hour: 3_600,
};

/** The wires of a validated document, every default filled in (per key, pause, enforce), spend in micro-USD. */
export function compileTripwires(wires: readonly TripwireInput[] | undefined): Tripwire[] {
  return (wires ?? []).map((w) => {
    const metric = TRIPWIRE_METRICS.find((m) => w.when[m] !== undefined) ?? 'calls_per_minute';
    const value = w.when[metric] ?? 0;
    return {
      name: tripwireName(w),
      metric,
      limit: metric === 'spend_usd_per_10m' ? usdToMicros(value) : value,
      windowSeconds: TRIPWIRE_WINDOWS[metric],
      per: w.per ?? 'key',
      then: w.then ?? 'pause',
      mode: w.mode ?? 'enforce',
    };
  });
}

/** Who is calling, as a tripwire's scope needs it. */
export interface TripwireKey {
  id: string;
  agent: string;
  run_id: string | null;
}

/** One wire as admission measures it (leash_tripwires' payload): the scope is `kind` and `id`. */
export interface TripwireCheck {
  wire: string;
  metric: TripwireMetric;
  limit: number;
  seconds: number;
  per: Tripwire['per'];
  /** The scope measured and paused: `per`, except that a key with no run is its own run. */
  kind: Tripwire['per'];
  id: string;
  then: Tripwire['then'];
  mode: Tripwire['mode'];
  policy: string;
  /** A wire of the policy's shadow version (measured as mode shadow): that version. */
  shadow_version?: number;
}

/** The policy's wires for one call of `key`, each with the scope it measures. */
export function tripwiresFor(
  policy: { name: string; tripwires: readonly Tripwire[] },
  key: TripwireKey,
): TripwireCheck[] {
  return policy.tripwires.map((w) => {
    const [kind, id]: [Tripwire['per'], string] =
      w.per === 'run'
        ? key.run_id === null
          ? ['key', key.id]
          : ['run', key.run_id]
        : w.per === 'agent'
          ? ['agent', key.agent]
          : w.per === 'policy'
            ? ['policy', policy.name]
            : ['key', key.id];
    return {
      wire: w.name,
      metric: w.metric,
      limit: w.limit,
      seconds: w.windowSeconds,
      per: w.per,
      kind,
      id,
      then: w.then,
      mode: w.mode,
      policy: policy.name,
    };
  });
}

/** At most this many recipients of one call are counted (an email's recipients are capped by policy well below). */
export const MAX_RECIPIENTS = 100;
const MAX_RECIPIENT_CHARS = 256;

/** Who a call reaches, for `distinct_recipients_per_hour`: its `recipients` fact, else its customer. */
export function recipientsOf(facts: PolicyFacts | undefined): string[] {
  const listed = Array.isArray(facts?.recipients) ? facts.recipients : [];
  const all = listed.length ? listed : typeof facts?.customer === 'string' ? [facts.customer] : [];
  const out = new Set<string>();
  for (const r of all) {
    if (typeof r !== 'string' || !r) continue;
    // eslint-disable-next-line no-control-regex -- control characters (a NUL) cannot be stored in jsonb
    const clean = r.replace(/[\u0000-\u001f]/g, '').trim();
    // An email address is one person whatever its case; other ids (a customer's) are case-sensitive.
    out.add((clean.includes('@') ? clean.toLowerCase() : clean).slice(0, MAX_RECIPIENT_CHARS));
    if (out.size >= MAX_RECIPIENTS) break;
  }
  return [...out];
}
