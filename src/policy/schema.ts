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
};

/** Generic rules a tool may opt into (`credential` applies to all). */
export type RuleName = Exclude<keyof typeof genericRuleShape, 'credential'>;

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
      z.strictObject({ credential: name.default('default'), account: z.string().min(1).optional() }),
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
