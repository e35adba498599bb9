import type { CompiledPolicy, ToolRule } from './compile.js';
import { formatUsd, toMicroUsd } from './money.js';

/** What a call is about, as the policy sees it: from the input and from facts looked up at the vendor. */
export interface PolicyFacts {
  /** The money this call moves, in the vendor's minor units. */
  amount?: { minor: number; currency: string };
  /** The vendor customer the call touches; null when the object has none. */
  customer?: string | null;
  phones?: readonly string[];
  emails?: readonly string[];
  segments?: number;
}

export interface EvaluationRequest {
  tool: string;
  policy: CompiledPolicy;
  key: { revokedAt: Date | null; expiresAt: Date | null };
  now: Date;
  facts: PolicyFacts;
  /** Allowed calls by this key with the same tool and arguments inside the loop-guard window. */
  recentIdenticalCalls: number;
  fxRates: Readonly<Record<string, number>>;
}

export type DenyCode =
  | 'key_revoked'
  | 'key_expired'
  | 'tool_not_allowed'
  | 'currency_not_supported'
  | 'amount_over_limit'
  | 'customer_not_allowed'
  | 'recipient_not_allowed'
  | 'too_many_recipients'
  | 'too_many_segments'
  | 'loop_detected';

export type Decision =
  | { allow: true; amountMicros?: number }
  | { allow: false; code: DenyCode; message: string; details: Record<string, unknown> };

const deny = (code: DenyCode, message: string, details: Record<string, unknown> = {}): Decision => ({
  allow: false,
  code,
  message,
  details,
});

function phoneAllowed(rule: ToolRule, phone: string): boolean {
  if (!rule.toPrefixes && !rule.toNumbers) return true;
  if (rule.toNumbers?.has(phone)) return true;
  return rule.toPrefixes?.some((p) => phone.startsWith(p)) ?? false;
}

function emailAllowed(rule: ToolRule, address: string): boolean {
  if (!rule.toDomains && !rule.toAddresses) return true;
  const a = address.toLowerCase();
  if (rule.toAddresses?.has(a)) return true;
  const domain = a.slice(a.lastIndexOf('@') + 1);
  return (
    rule.toDomains?.some((d) => (d.startsWith('*.') ? domain.endsWith(d.slice(1)) : domain === d)) ?? false
  );
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
    amountMicros = toMicroUsd(facts.amount.minor, facts.amount.currency, req.fxRates);
    if (amountMicros === undefined) {
      return deny(
        'currency_not_supported',
        `no USD rate is configured for ${facts.amount.currency.toUpperCase()}`,
        {
          currency: facts.amount.currency.toUpperCase(),
        },
      );
    }
    if (rule.maxAmountMicros !== undefined && amountMicros > rule.maxAmountMicros) {
      return deny(
        'amount_over_limit',
        `amount ${formatUsd(amountMicros)} is over the per-call limit of ${formatUsd(rule.maxAmountMicros)}`,
        {
          amount_micros: amountMicros,
          max_amount_micros: rule.maxAmountMicros,
        },
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
      {
        customer: facts.customer ?? null,
      },
    );
  }

  const phones = facts.phones ?? [];
  const emails = facts.emails ?? [];
  const recipients = phones.length + emails.length;
  if (rule.maxRecipients !== undefined && recipients > rule.maxRecipients) {
    return deny(
      'too_many_recipients',
      `${recipients} recipients is over the limit of ${rule.maxRecipients}`,
      {
        recipients,
        max_recipients: rule.maxRecipients,
      },
    );
  }
  const badPhones = phones.filter((p) => !phoneAllowed(rule, p));
  const badEmails = emails.filter((e) => !emailAllowed(rule, e));
  if (badPhones.length || badEmails.length) {
    const bad = [...badPhones, ...badEmails];
    return deny(
      'recipient_not_allowed',
      `recipient${bad.length > 1 ? 's' : ''} not allowed by policy: ${bad.join(', ')}`,
      {
        recipients: bad,
      },
    );
  }
  if (rule.maxSegments !== undefined && (facts.segments ?? 0) > rule.maxSegments) {
    return deny(
      'too_many_segments',
      `message is ${facts.segments ?? 0} segments; the limit is ${rule.maxSegments}`,
      {
        segments: facts.segments,
        max_segments: rule.maxSegments,
      },
    );
  }

  if (policy.loopGuard && req.recentIdenticalCalls >= policy.loopGuard.identicalCalls) {
    return deny(
      'loop_detected',
      `the same ${req.tool} call was already made ${req.recentIdenticalCalls} times in the last ${policy.loopGuard.windowSeconds}s; stop and ask a human`,
      { identical_calls: req.recentIdenticalCalls, window_seconds: policy.loopGuard.windowSeconds },
    );
  }
  return amountMicros === undefined ? { allow: true } : { allow: true, amountMicros };
}
