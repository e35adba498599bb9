import { formatUsd, toMicroUsd } from './money.js';
import { genericRuleShape } from './schema.js';
import type { CompiledPolicy, PolicyFacts, RuleDenial, ToolRule, ToolRules } from './types.js';

export type { PolicyFacts } from './types.js';

export interface EvaluationRequest {
  tool: string;
  /** The rules the tool declares itself (from the catalog); undefined when it declares none. */
  ownRules: ToolRules | undefined;
  policy: CompiledPolicy;
  key: { revokedAt: Date | null; expiresAt: Date | null };
  now: Date;
  facts: PolicyFacts;
  fxRates: Readonly<Record<string, number>>;
}

/** Codes of the generic checks; a tool's own rules add theirs (all listed in the pipeline's refusal table). */
export type DenyCode =
  | 'key_revoked'
  | 'key_expired'
  | 'tool_not_allowed'
  | 'currency_not_supported'
  | 'amount_over_limit'
  | 'customer_not_allowed';

/** An allowed call a person must approve first: held until then, the approval good for `expiresSeconds`. */
export interface ApprovalNeed {
  expiresSeconds: number;
  /** Why, for the audit row and the approver: over the threshold, or always. */
  reason: 'above_usd' | 'always';
  aboveMicros?: number;
}

export type Decision =
  | { allow: true; amountMicros?: number; approval?: ApprovalNeed }
  | { allow: false; code: string; message: string; details: Record<string, unknown> };

const deny = (code: DenyCode, message: string, details: Record<string, unknown> = {}): Decision => ({
  allow: false,
  code,
  message,
  details,
});

/** The tool's own rules on the facts: a rule the tool does not declare cannot be enforced, so it denies. */
function ownCheck(req: EvaluationRequest): RuleDenial | undefined {
  const rule = req.policy.tools.get(req.tool);
  if (!rule) return undefined;
  const known = new Set([...Object.keys(genericRuleShape), ...Object.keys(req.ownRules?.shape ?? {})]);
  const unknown = Object.keys(rule.source).filter((k) => !known.has(k));
  if (unknown.length)
    return {
      code: 'tool_not_allowed',
      message: `policy '${req.policy.name}' sets rules ${req.tool} cannot enforce (${unknown.join(', ')})`,
      details: { rules: unknown },
    };
  try {
    return req.ownRules?.check(rule, req.facts);
  } catch {
    // A stored rule that no longer parses, or facts the tool's check cannot read: unknown means deny.
    return {
      code: 'tool_not_allowed',
      message: `policy '${req.policy.name}' has rules for ${req.tool} that could not be checked on this call`,
      details: {},
    };
  }
}

/** Pure: decides one call. Deny rules are checked before anything is allowed; what is unknown is denied. */
export function evaluate(req: EvaluationRequest): Decision {
  const { policy, facts } = req;
  if (req.key.revokedAt)
    return deny('key_revoked', 'this vault key has been revoked', { revoked_at: req.key.revokedAt });
  if (req.key.expiresAt && req.key.expiresAt.getTime() <= req.now.getTime()) {
    return deny('key_expired', 'this vault key has expired', { expired_at: req.key.expiresAt });
  }
  const rule = policy.tools.get(req.tool);
  if (!rule) {
    return deny('tool_not_allowed', `policy '${policy.name}' does not allow ${req.tool}`, {
      allowed_tools: [...policy.tools.keys()],
    });
  }

  let amountMicros: number | undefined;
  if (facts.amount) {
    const currency = facts.amount.currency.toUpperCase();
    amountMicros = toMicroUsd(facts.amount.minor, currency, req.fxRates);
    if (amountMicros === undefined) {
      return deny('currency_not_supported', `no USD rate is configured for ${currency}`, { currency });
    }
    if (rule.maxAmountMicros !== undefined && amountMicros > rule.maxAmountMicros) {
      return deny(
        'amount_over_limit',
        `amount ${formatUsd(amountMicros)} is over the per-call limit of ${formatUsd(rule.maxAmountMicros)}`,
        { amount_micros: amountMicros, max_amount_micros: rule.maxAmountMicros },
      );
    }
  } else if (rule.maxAmountMicros !== undefined) {
    return deny('amount_over_limit', 'the amount of this call could not be determined', {});
  }

  if (
    rule.customers &&
    (facts.customer === undefined || facts.customer === null || !rule.customers.has(facts.customer))
  ) {
    return deny(
      'customer_not_allowed',
      `customer ${facts.customer ?? '(none)'} is not on this policy's customer list`,
      { customer: facts.customer ?? null },
    );
  }

  const own = ownCheck(req);
  if (own) return { allow: false, ...own };
  const allowed: Decision = amountMicros === undefined ? { allow: true } : { allow: true, amountMicros };
  const approval = approvalNeed(rule.approval, amountMicros);
  return approval ? { ...allowed, approval } : allowed;
}

/** Whether an otherwise allowed call waits for a person. An amount that cannot be known is held (fail closed). */
function approvalNeed(
  rule: ToolRule['approval'],
  amountMicros: number | undefined,
): ApprovalNeed | undefined {
  if (!rule) return undefined;
  if (rule.aboveMicros === undefined) return { expiresSeconds: rule.expiresSeconds, reason: 'always' };
  if (amountMicros !== undefined && amountMicros <= rule.aboveMicros) return undefined;
  return { expiresSeconds: rule.expiresSeconds, reason: 'above_usd', aboveMicros: rule.aboveMicros };
}
