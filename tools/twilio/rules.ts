import { z } from 'zod';
import type { PolicyFacts } from '../../src/policy/evaluate.js';
import { defineRules } from '../../src/policy/rule-set.js';

export const E164 = /^\+[1-9]\d{6,14}$/;
const SERVICE_SID = /^MG[0-9a-fA-F]{32}$/;

export type Sender = { from: string } | { messagingServiceSid: string };

/** The sender, from the policy only: an E.164 number or a messaging service SID. */
export function sender(from: string | undefined): Sender | undefined {
  if (from && E164.test(from)) return { from };
  if (from && SERVICE_SID.test(from)) return { messagingServiceSid: from };
  return undefined;
}

/** What send_sms's rules check. */
export type SmsFacts = PolicyFacts & { phones: readonly string[]; segments: number };

export interface SmsRule {
  /** As written in the policy; `sender` parses it. */
  from?: string;
  toPrefixes?: readonly string[];
  toNumbers?: ReadonlySet<string>;
  maxSegments?: number;
}

const allowed = (r: SmsRule, phone: string) =>
  (!r.toPrefixes && !r.toNumbers) ||
  Boolean(r.toNumbers?.has(phone)) ||
  (r.toPrefixes?.some((p) => phone.startsWith(p)) ?? false);

/** send_sms's policy rules: a pinned sender, allowed destinations, and a segment cap. */
export const smsRules = defineRules({
  shape: {
    /** Pinned sender: an E.164 number or a messaging service SID. */
    from: z
      .string()
      .min(1)
      .refine((v) => sender(v) !== undefined, {
        error: (issue) =>
          `send_sms 'from' must be an E.164 number or a messaging service SID (MG…), got '${String(issue.input)}'`,
      })
      .optional(),
    /** Allowed destination prefixes / exact numbers. */
    to_prefixes: z
      .array(z.string().regex(/^\+\d{1,15}$/, 'expected "+" and digits, e.g. "+1" or "+4420"'))
      .min(1)
      .optional(),
    to_numbers: z
      .array(z.string().regex(E164, 'expected an E.164 number, e.g. "+15551234567"'))
      .min(1)
      .optional(),
    max_segments: z.number().int().positive().max(100).optional(),
  },
  requires: ['from'],
  compile(raw): SmsRule {
    const r: SmsRule = {};
    if (raw.from) r.from = raw.from;
    if (raw.to_prefixes) r.toPrefixes = raw.to_prefixes;
    if (raw.to_numbers) r.toNumbers = new Set(raw.to_numbers);
    if (raw.max_segments !== undefined) r.maxSegments = raw.max_segments;
    return r;
  },
  check(r, facts: SmsFacts) {
    const bad = facts.phones.filter((p) => !allowed(r, p));
    if (bad.length)
      return {
        code: 'recipient_not_allowed',
        message: `recipient${bad.length > 1 ? 's' : ''} not allowed by policy: ${bad.join(', ')}`,
        details: { recipients: bad },
      };
    if (r.maxSegments !== undefined && facts.segments > r.maxSegments)
      return {
        code: 'too_many_segments',
        message: `message is ${facts.segments} segments; the limit is ${r.maxSegments}`,
        details: { segments: facts.segments, max_segments: r.maxSegments },
      };
    return undefined;
  },
});
