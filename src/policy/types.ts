// The policy's shared vocabulary: what compile.ts produces, what a tool's declared rules (rule-set.ts) check, and
// what evaluate.ts reads. Every policy module imports these from here, none from another.
import type { z } from 'zod';
import type { PolicyFile, RuleName, ToolRuleInput } from './schema.js';

/** A policy document that cannot be applied; the message names the path and what was expected. */
export class PolicyFileError extends Error {
  override name = 'PolicyFileError';
}

/** What the policy compiler needs to know about each tool in the catalog. */
export interface ToolRuleSpec {
  vendor?: string;
  /** Generic rules this tool takes (`credential` applies to every tool). */
  rules: readonly RuleName[];
  /** Rules the tool declares itself (schema fragment, required keys, check). */
  own?: ToolRules;
}

/** One tool's rules: the generic ones normalised for evaluation, and the rule as written for the tool's own. */
export interface ToolRule {
  credential?: string;
  maxAmountMicros?: number;
  customers?: ReadonlySet<string>;
  /** Hold for a person above this USD amount, or always (`aboveMicros` undefined); good for `expiresSeconds`. */
  approval?: { aboveMicros?: number; expiresSeconds: number };
  /** The rule as written; a tool's declared rules compile from it (see rule-set.ts). */
  source: ToolRuleInput;
}

export interface CompiledPolicy {
  name: string;
  version: number;
  digest: string;
  limits: {
    dailyMicros?: number;
    perKeyDailyMicros?: number;
    hourlyRequests?: number;
    perKeyHourlyRequests?: number;
  };
  vendors: Readonly<Record<string, { credential: string; account?: string }>>;
  tools: ReadonlyMap<string, ToolRule>;
  loopGuard?: { identicalCalls: number; windowSeconds: number };
  /** Tripwires, in the order written (measured in the admission statement; see tripwires.ts). */
  tripwires: readonly Tripwire[];
  /** Some rule holds calls for a person (then `get_approval` is allowed and listed). */
  approvals: boolean;
  document: PolicyFile;
}

/**
 * What a call is about, as the policy sees it: from the input and from facts looked up at the vendor. The
 * generic rules read `amount` and `customer`; a tool's own rules read the facts that tool adds.
 */
export interface PolicyFacts {
  /** The money this call moves, in the vendor's minor units. */
  amount?: { minor: number; currency: string };
  /** The vendor customer the call touches; null when the object has none. */
  customer?: string | null;
  /**
   * Who the call reaches (phone numbers, email addresses): what `distinct_recipients_per_hour` counts. A call that
   * names none counts its `customer`.
   */
  recipients?: readonly string[];
  [fact: string]: unknown;
}

/** What a tripwire measures: calls and denials per minute, spend per 10 minutes, distinct recipients per hour. */
export type TripwireMetric =
  'calls_per_minute' | 'denials_per_minute' | 'spend_usd_per_10m' | 'distinct_recipients_per_hour';

/** A tripwire as compiled: every default filled in, spend in micro-USD. */
export interface Tripwire {
  name: string;
  metric: TripwireMetric;
  /** The line: calls, denials or recipients, or micro-USD for spend. Going over it (figure > limit) trips the wire. */
  limit: number;
  windowSeconds: number;
  per: 'key' | 'run' | 'agent' | 'policy';
  then: 'pause' | 'alert' | 'revoke';
  mode: 'enforce' | 'warn' | 'shadow';
}

/** A tool-declared rule said no: a stable code (from the refusal table), a sentence and details. */
export interface RuleDenial {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

/** Rules a tool declares in its own folder: a fragment of its rule schema and a pure check evaluate() runs. */
export interface ToolRules {
  /** Each rule key this tool adds, with its schema. */
  shape: Readonly<Record<string, z.ZodType>>;
  /** Keys a policy must set to enable the tool (e.g. a pinned sender). */
  requires?: readonly string[];
  /** Pure: this call's facts against the policy's rule for the tool; a denial, or undefined to go on. */
  check(rule: ToolRule, facts: PolicyFacts): RuleDenial | undefined;
}
