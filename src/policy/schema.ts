import { z } from 'zod';

const usd = z.number().nonnegative().max(1e9).multipleOf(0.000001, 'at most 6 decimal places');
const name = z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'lower-case letters, digits, "_", "-", "."');
const duration = z
  .string()
  .regex(/^\d+(s|m|h|d)$/, 'expected a duration like "30s", "10m", "1h", "1d"')
  .or(z.number().int().positive());

/**
 * The rules any tool may take, whatever its vendor. A tool lists which of these apply to it and declares
 * rules of its own in its folder (see rule-set.ts); a policy that sets any other is rejected when applied.
 * Every rule narrows; none widens.
 */
export const genericRuleShape = {
  /** Vendor credential name for this tool (overrides the vendor default). Applies to every tool. */
  credential: name.optional(),
  /** Per-call maximum, in USD (converted from the call's currency with configured rates). */
  max_amount_usd: usd.optional(),
  /** Only these vendor customers (the vendor's customer ids). */
  customers: z.array(z.string().min(1)).min(1).optional(),
  /**
   * Hold the call for a person: above an amount (`above_usd`, tools that move money) or `always`; the approval is
   * good for one identical call until `expires` (default 30m, at most 7d). Applies to every tool.
   */
  approval: z
    .strictObject({
      above_usd: usd.optional(),
      always: z.literal(true).optional(),
      expires: duration.default('30m'),
    })
    .refine((a) => (a.above_usd === undefined) !== (a.always === undefined), {
      message: 'give exactly one of above_usd or always: true',
    })
    .refine((a) => durationSeconds(a.expires) <= 7 * 86_400, { message: 'expires is at most 7d' })
    .optional(),
};

/** Generic rules a tool may opt into (`credential` and `approval` apply to all). */
export type RuleName = Exclude<keyof typeof genericRuleShape, 'credential' | 'approval'>;

/** One tool's rule as written: generic keys plus the tool's own, checked against the catalog when applied. */
export type ToolRuleInput = Readonly<Record<string, unknown>>;

/** What a tripwire measures, each over its own sliding window (TRIPWIRE_WINDOWS). */
export const TRIPWIRE_METRICS = [
  'calls_per_minute',
  'denials_per_minute',
  'spend_usd_per_10m',
  'distinct_recipients_per_hour',
] as const;

/** Whose calls a tripwire counts, and what it pauses or revokes: the key (default), its run, its agent, or the policy. */
export const TRIPWIRE_SCOPES = ['key', 'run', 'agent', 'policy'] as const;

const count = z.number().int('expected a whole number').positive().max(1e9);

/**
 * A tripwire: when one measure of a scope's calls goes over its line, pause the scope (default), revoke its keys, or
 * alert. `mode` warn only alerts; shadow only records what it would have done on the audit row.
 */
const tripwireSchema = z.strictObject({
  /** Names the wire in refusals, alerts and pauses; defaults to the metric (plus `_<per>` when not per key). */
  name: name.optional(),
  when: z
    .strictObject({
      calls_per_minute: count.optional(),
      denials_per_minute: count.optional(),
      spend_usd_per_10m: z
        .number()
        .positive()
        .max(1e9)
        .multipleOf(0.000001, 'at most 6 decimal places')
        .optional(),
      distinct_recipients_per_hour: count.optional(),
    })
    .refine((w) => Object.values(w).filter((v) => v !== undefined).length === 1, {
      message: `give exactly one of ${TRIPWIRE_METRICS.join(', ')}`,
    }),
  per: z.enum(TRIPWIRE_SCOPES).optional(),
  then: z.enum(['pause', 'alert', 'revoke']).optional(),
  mode: z.enum(['enforce', 'warn', 'shadow']).optional(),
});

export type TripwireInput = z.infer<typeof tripwireSchema>;

/** The name a wire goes by: its own, or the metric (plus `_<per>` when it is not per key). */
export function tripwireName(w: TripwireInput): string {
  if (w.name) return w.name;
  const metric = TRIPWIRE_METRICS.find((m) => w.when[m] !== undefined) ?? 'tripwire';
  return w.per && w.per !== 'key' ? `${metric}_${w.per}` : metric;
}

/** At most 20 wires, each name used once (a wire is named in refusals, alerts and pauses). */
const tripwiresSchema = z
  .array(tripwireSchema)
  .max(20, 'at most 20 tripwires')
  .superRefine((wires, ctx) => {
    const seen = new Map<string, number>();
    wires.forEach((w, i) => {
      const n = tripwireName(w);
      const first = seen.get(n);
      if (first === undefined) seen.set(n, i);
      else
        ctx.addIssue({
          code: 'custom',
          path: [i, 'name'],
          message: `tripwire name '${n}' is already used by tripwires[${first}]; give each wire its own name`,
        });
    });
  });

/** The policy file (YAML or JSON). Unknown keys are errors, reported with their path. */
export const policyFileSchema = z.strictObject({
  name,
  description: z.string().max(500).optional(),
  limits: z
    .strictObject({
      /** USD per UTC day across every key of this policy. */
      daily_usd: usd.optional(),
      /** USD per UTC day for each key. */
      per_key_daily_usd: usd.optional(),
      /** Requests per hour across every key of this policy. */
      hourly_requests: z.number().int().nonnegative().optional(),
      /** Requests per hour for each key. */
      per_key_hourly_requests: z.number().int().nonnegative().optional(),
    })
    .default({}),
  vendors: z
    .record(
      z.string().regex(/^[a-z][a-z0-9_]*$/, 'a vendor name: lower-case letters, digits and "_"'),
      z.strictObject({
        credential: name.default('default'),
        account: z.string().min(1).optional(),
        /**
         * The vendor's REST endpoints a key may call through the REST front door, `METHOD /path/template` → the
         * same rules as the matching tool (null or {} for none). Default deny: any other endpoint is refused.
         */
        http: z
          .record(
            z.string().regex(/^(GET|POST|DELETE) \/\S*$/, 'an endpoint like "POST /v1/refunds"'),
            z.record(z.string(), z.unknown()).nullable(),
          )
          .optional(),
      }),
    )
    .default({}),
  // Each tool's rule is checked against that tool's declared rules by validatePolicy (compile.ts).
  tools: z.record(
    z.string().regex(/^[a-z][a-z0-9_]*$/, 'a tool name such as "get_budget"'),
    z.record(z.string(), z.unknown()).nullable(),
  ),
  loop_guard: z
    .strictObject({
      identical_calls: z.number().int().positive(),
      window: duration,
    })
    .optional(),
  tripwires: tripwiresSchema.optional(),
});

export type PolicyFile = z.infer<typeof policyFileSchema>;

/** Seconds in a duration written as "30s" / "10m" / "1h" / "1d" or a number of seconds. */
export function durationSeconds(value: string | number): number {
  if (typeof value === 'number') return value;
  const n = Number.parseInt(value, 10);
  const unit = value.at(-1);
  return n * (unit === 'd' ? 86_400 : unit === 'h' ? 3_600 : unit === 'm' ? 60 : 1);
}
