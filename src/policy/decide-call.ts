// The one decision on a call, made the same way by the pipeline, `leash policies test` and `leash policies replay`:
// the facts policy checks (from the input and what the tool looked up), the policy's verdict, and the cost reserved.
import { evaluate, type Decision } from './evaluate.js';
import { genericRuleShape } from './schema.js';
import type { CompiledPolicy, PolicyFacts, ToolRule, ToolRules } from './types.js';

/** Prices and rates the cost estimates use (from config). A vendor reads its own with its PriceSheet. */
export interface Pricing {
  fxRates: Readonly<Record<string, number>>;
  /** Vendor prices by price-sheet key. */
  prices: Readonly<Record<string, unknown>>;
}

/** What deciding needs of a tool (a catalog's ToolDefinition is one): its own rules and, for a call, its facts. */
export interface DecidingTool {
  name: string;
  ownRules?: ToolRules | undefined;
}

/** A tool as a whole call needs it: how its facts and cost follow from the input and what it looked up. */
export interface PricingTool extends DecidingTool {
  facts(input: unknown, looked: unknown): PolicyFacts;
  estimateCostMicros(
    input: unknown,
    looked: unknown,
    pricing: Pricing,
    amountMicros: number | undefined,
  ): number;
}

interface Judged {
  policy: CompiledPolicy;
  key: { revokedAt: Date | null; expiresAt: Date | null };
  now: Date;
}

/** How a call ends under a policy's rules: allowed, held for a person, or denied. Audit rows use the same words. */
export type Verdict = 'allowed' | 'held' | 'denied';

export function verdictOf(d: Decision): Verdict {
  return !d.allow ? 'denied' : d.approval ? 'held' : 'allowed';
}

/** The policy's decision on facts already known (what the pipeline stored for a call, when replaying it). Pure. */
export function decideFacts(
  o: Judged & { tool: DecidingTool; facts: PolicyFacts; fxRates: Readonly<Record<string, number>> },
): Decision {
  return evaluate({
    tool: o.tool.name,
    ownRules: o.tool.ownRules,
    policy: o.policy,
    key: o.key,
    now: o.now,
    facts: o.facts,
    fxRates: o.fxRates,
  });
}

export interface CallDecision {
  /** What the policy decided on; the audit row keeps them, so a replay decides on exactly these. */
  facts: PolicyFacts;
  decision: Decision;
  /** The estimate reserved before the vendor call, in micro-USD; 0 when denied. */
  costMicros: number;
}

/**
 * Decides one call from its parsed input and what the tool looked up at the vendor (undefined when it looks
 * nothing up): the tool's facts, the policy's decision on them, and the cost to reserve. Pure.
 */
export function decideCall(
  o: Judged & { tool: PricingTool; input: unknown; looked: unknown; pricing: Pricing },
): CallDecision {
  const facts = o.tool.facts(o.input, o.looked);
  const decision = decideFacts({ ...o, facts, fxRates: o.pricing.fxRates });
  const costMicros = decision.allow
    ? o.tool.estimateCostMicros(o.input, o.looked, o.pricing, decision.amountMicros)
    : 0;
  return { facts, decision, costMicros };
}

/**
 * The rules of `rule` that partial facts cannot decide (a dry run not told them, an audit row that lacks them):
 * the generic ones that read the amount or the customer, and, unless the facts are `complete`, the tool's own.
 */
export function undecidedRules(rule: ToolRule, facts: PolicyFacts, complete: boolean): string[] {
  const gaps: string[] = [];
  if (rule.maxAmountMicros !== undefined && facts.amount === undefined) gaps.push('max_amount_usd');
  if (rule.customers && facts.customer === undefined) gaps.push('customers');
  // evaluate() holds a call whose amount it cannot know (fail closed); a replay must not report that as a hold.
  if (rule.approval?.aboveMicros !== undefined && facts.amount === undefined) gaps.push('approval');
  if (!complete) {
    const generic = new Set(Object.keys(genericRuleShape));
    for (const k of Object.keys(rule.source)) if (!generic.has(k)) gaps.push(k);
  }
  return gaps;
}
