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
});

export type PolicyFile = z.infer<typeof policyFileSchema>;

/** Seconds in a duration written as "30s" / "10m" / "1h" / "1d" or a number of seconds. */
export function durationSeconds(value: string | number): number {
  if (typeof value === 'number') return value;
  const n = Number.parseInt(value, 10);
  const unit = value.at(-1);
  return n * (unit === 'd' ? 86_400 : unit === 'h' ? 3_600 : unit === 'm' ? 60 : 1);
}
