import { z } from 'zod';
import type { PolicyFacts } from '../../src/policy/evaluate.js';
import { defineRules } from '../../src/policy/rule-set.js';

/** What send_email's rules check: every recipient, once. */
export type EmailFacts = PolicyFacts & { emails: readonly string[] };

export interface EmailRule {
  /** Pinned sender, e.g. `Support <support@acme.com>`. */
  from?: string;
  /** Lower-case; `*.acme.com` allows subdomains. */
  toDomains?: readonly string[];
  /** Lower-case. */
  toAddresses?: ReadonlySet<string>;
  maxRecipients?: number;
}

function allowed(r: EmailRule, address: string): boolean {
  if (!r.toDomains && !r.toAddresses) return true;
  const a = address.toLowerCase();
  if (r.toAddresses?.has(a)) return true;
  const domain = a.slice(a.lastIndexOf('@') + 1);
  return r.toDomains?.some((d) => (d.startsWith('*.') ? domain.endsWith(d.slice(1)) : domain === d)) ?? false;
}

/** send_email's policy rules: a pinned sender, allowed recipients, and a recipient cap. */
export const emailRules = defineRules({
  shape: {
    from: z.string().min(1).optional(),
    /** Allowed recipient domains / exact addresses. */
    to_domains: z
      .array(
        z
          .string()
          .regex(/^(\*\.)?([a-z0-9-]+\.)+[a-z]{2,}$/i, 'expected a domain, e.g. "acme.com" or "*.acme.com"'),
      )
      .min(1)
      .optional(),
    to_addresses: z
      .array(z.email({ error: 'expected an email address' }))
      .min(1)
      .optional(),
    max_recipients: z.number().int().positive().max(1000).optional(),
  },
  requires: ['from'],
  compile(raw): EmailRule {
    const r: EmailRule = {};
    if (raw.from) r.from = raw.from;
    if (raw.to_domains) r.toDomains = raw.to_domains.map((d) => d.toLowerCase());
    if (raw.to_addresses) r.toAddresses = new Set(raw.to_addresses.map((a) => a.toLowerCase()));
    if (raw.max_recipients !== undefined) r.maxRecipients = raw.max_recipients;
    return r;
  },
  check(r, facts: EmailFacts) {
    const n = facts.emails.length;
    if (r.maxRecipients !== undefined && n > r.maxRecipients)
      return {
        code: 'too_many_recipients',
        message: `${n} recipients is over the limit of ${r.maxRecipients}`,
        details: { recipients: n, max_recipients: r.maxRecipients },
      };
    const bad = facts.emails.filter((e) => !allowed(r, e));
    if (bad.length)
      return {
        code: 'recipient_not_allowed',
        message: `recipient${bad.length > 1 ? 's' : ''} not allowed by policy: ${bad.join(', ')}`,
        details: { recipients: bad },
      };
    return undefined;
  },
});
