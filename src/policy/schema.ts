import { z } from 'zod';

const usd = z.number().nonnegative().max(1e9).multipleOf(0.000001, 'at most 6 decimal places');
const name = z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'lower-case letters, digits, "_", "-", "."');
const e164Prefix = z.string().regex(/^\+\d{1,15}$/, 'expected "+" and digits, e.g. "+1" or "+4420"');
const e164 = z.string().regex(/^\+[1-9]\d{6,14}$/, 'expected an E.164 number, e.g. "+15551234567"');
const domain = z
  .string()
  .regex(/^(\*\.)?([a-z0-9-]+\.)+[a-z]{2,}$/i, 'expected a domain, e.g. "acme.com" or "*.acme.com"');
const email = z.email({ error: 'expected an email address' });
const duration = z
  .string()
  .regex(/^\d+(s|m|h|d)$/, 'expected a duration like "30s", "10m", "1h", "1d"')
  .or(z.number().int().positive());

/**
 * The rules a policy may set on one tool. A tool declares which of these apply to it; a policy that sets
 * another is rejected when applied. Every rule narrows; none widens.
 */
export const toolRuleSchema = z.strictObject({
  /** Vendor credential name for this tool (overrides the vendor default). */
  credential: name.optional(),
  /** Per-call maximum, in USD (converted from the call's currency with configured rates). */
  max_amount_usd: usd.optional(),
  /** Only these vendor customers (e.g. Stripe `cus_…`). */
  customers: z.array(z.string().min(1)).min(1).optional(),
  /** Pinned sender: an E.164 number, a messaging service SID, or `Name <address>` for email. */
  from: z.string().min(1).optional(),
  /** Allowed destination phone prefixes / exact numbers. */
  to_prefixes: z.array(e164Prefix).min(1).optional(),
  to_numbers: z.array(e164).min(1).optional(),
  /** Allowed recipient email domains / exact addresses. */
  to_domains: z.array(domain).min(1).optional(),
  to_addresses: z.array(email).min(1).optional(),
  max_recipients: z.number().int().positive().max(1000).optional(),
  max_segments: z.number().int().positive().max(100).optional(),
});

export type ToolRuleInput = z.infer<typeof toolRuleSchema>;
export type RuleName = keyof ToolRuleInput;

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
      z.string().regex(/^[a-z][a-z0-9_]*$/, 'a vendor name such as "stripe"'),
      z.strictObject({ credential: name.default('default'), account: z.string().min(1).optional() }),
    )
    .default({}),
  tools: z.record(
    z.string().regex(/^[a-z][a-z0-9_]*$/, 'a tool name such as "issue_refund"'),
    toolRuleSchema.nullable(),
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
