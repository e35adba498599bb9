// Replays audit rows through a candidate policy's rules (pure): what would have been decided differently.
import type { CompiledPolicy, ToolRule } from '../policy/compile.js';
import { genericRuleShape } from '../policy/schema.js';
import { evaluate, type PolicyFacts } from '../policy/evaluate.js';
import type { ToolRules } from '../policy/rule-set.js';

/** What replay needs of a tool (a catalog's ToolDefinition is one): its own rules, and its facts from the input. */
export interface ReplayTool {
  /** Present when the tool looks facts up from the vendor: then its facts cannot come from the stored request. */
  lookup?: unknown;
  facts(input: Record<string, unknown>, looked: undefined): PolicyFacts;
  ownRules?: ToolRules | undefined;
}

/** What replay reads of one audit row. */
export interface ReplayRow {
  id: string;
  ts: Date;
  tool: string;
  /** allowed | denied */
  decision: string;
  reason: string | null;
  request: unknown;
  amount: number | null;
  currency: string | null;
  metadata: unknown;
  /** The USD value admitted (0 for denied rows). */
  usd_micros: number;
  cost_micros: number;
  reserved_micros: number;
}

/** Codes the policy's rules give; a candidate policy can change these decisions. */
const RULE_CODES = new Set([
  'tool_not_allowed',
  'currency_not_supported',
  'amount_over_limit',
  'customer_not_allowed',
  'recipient_not_allowed',
  'too_many_recipients',
  'too_many_segments',
]);
/** Decided in SQL at admission (caps, loop guard), after the rules: replay does not re-run them. */
const ADMISSION_CODES = new Set([
  'budget_exceeded',
  'request_limit_exceeded',
  'loop_detected',
  'outcome_pending',
]);

export interface ReplayChange {
  id: string;
  ts: string;
  tool: string;
  was: string;
  now: string;
  message?: string;
  usd_micros?: number;
}

export interface ReplayReport {
  rows: number;
  replayed: number;
  unchanged: number;
  /** Rows refused before the policy was consulted (bad key, bad input, vendor lookups): a policy cannot change them. */
  not_replayed: number;
  /** Rows whose facts the audit row does not hold (e.g. a refund's customer): by the rule that needs them. */
  undecidable: number;
  undecidable_by_rule: Record<string, number>;
  now_denied: number;
  now_denied_by_code: Record<string, number>;
  /** USD that calls now denied had been admitted at: what the candidate would have refused. */
  usd_refused_micros: number;
  now_allowed: number;
  now_allowed_by_code: Record<string, number>;
  /** Up to `sample` rows of each kind of change, oldest first. */
  changes: ReplayChange[];
  note: string;
}

/**
 * The rules of `rule` that partial facts (no stored facts, no facts from the request) cannot decide: a tool's
 * own rules read facts only the tool knows, and the generic ones need the amount or the customer.
 */
export function undecidedRules(rule: ToolRule, facts: PolicyFacts, complete: boolean): string[] {
  const gaps: string[] = [];
  if (rule.maxAmountMicros !== undefined && facts.amount === undefined) gaps.push('max_amount_usd');
  if (rule.customers && facts.customer === undefined) gaps.push('customers');
  if (!complete) {
    const generic = new Set(Object.keys(genericRuleShape));
    for (const k of Object.keys(rule.source)) if (!generic.has(k)) gaps.push(k);
  }
  return gaps;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
/** PolicyFacts from a plain object (as stored in `metadata.facts`); amount and customer only when well-formed. */
function factsFrom(v: unknown): PolicyFacts {
  if (!isRecord(v)) return {};
  const { amount, customer, ...rest } = v;
  const out: Record<string, unknown> = { ...rest };
  if (isRecord(amount) && typeof amount.minor === 'number' && typeof amount.currency === 'string')
    out.amount = { minor: amount.minor, currency: amount.currency };
  if (typeof customer === 'string' || customer === null) out.customer = customer;
  return out;
}

/**
 * The facts the policy saw for a row, from what the row holds: the facts the pipeline stored
 * (`metadata.facts`), the amount and currency columns, the tool's own `facts()` over the stored request when
 * the tool needs no vendor lookup, and what a denial recorded. Nothing is guessed.
 */
export function rowFacts(
  row: ReplayRow,
  tool: ReplayTool | undefined,
): { facts: PolicyFacts; complete: boolean } {
  const meta = isRecord(row.metadata) ? row.metadata : {};
  let facts: PolicyFacts = {};
  let complete = false;
  if (isRecord(meta.facts)) {
    facts = factsFrom(meta.facts);
    complete = true;
  } else if (tool && !tool.lookup && isRecord(row.request)) {
    try {
      facts = factsFrom(tool.facts(row.request, undefined));
      complete = true;
    } catch {
      // The stored request is redacted (e.g. an SMS body is kept only as its length): no facts from it.
    }
  }
  const denial = isRecord(meta.denial) ? meta.denial : {};
  if (facts.customer === undefined && typeof denial.customer === 'string')
    facts = { ...facts, customer: denial.customer };
  if (row.amount !== null && row.currency)
    facts = { ...facts, amount: { minor: row.amount, currency: row.currency } };
  return { facts, complete };
}

const bump = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);

/** Accumulates a replay over rows fed in any number of batches. */
export function createReplay(o: {
  policy: CompiledPolicy;
  tools: ReadonlyMap<string, ReplayTool>;
  fxRates: Readonly<Record<string, number>>;
  sample?: number;
}) {
  const r: ReplayReport = {
    rows: 0,
    replayed: 0,
    unchanged: 0,
    not_replayed: 0,
    undecidable: 0,
    undecidable_by_rule: {},
    now_denied: 0,
    now_denied_by_code: {},
    usd_refused_micros: 0,
    now_allowed: 0,
    now_allowed_by_code: {},
    changes: [],
    note: 'policy rules only: caps, request limits and the loop guard are decided at admission and are not replayed',
  };
  const sample = o.sample ?? 20;
  let deniedShown = 0;
  let allowedShown = 0;

  function add(row: ReplayRow): void {
    r.rows++;
    const was = row.decision === 'allowed' ? 'allowed' : (row.reason ?? 'denied');
    const ruleDecided = row.decision === 'allowed' || RULE_CODES.has(was) || ADMISSION_CODES.has(was);
    if (!ruleDecided) return void r.not_replayed++;
    const rule = o.policy.tools.get(row.tool);
    const tool = o.tools.get(row.tool);
    const { facts, complete } = rowFacts(row, tool);
    const gaps = rule ? undecidedRules(rule, facts, complete) : [];
    if (gaps.length) {
      r.undecidable++;
      for (const g of gaps) bump(r.undecidable_by_rule, g);
      return;
    }
    r.replayed++;
    const d = evaluate({
      tool: row.tool,
      ownRules: tool?.ownRules,
      policy: o.policy,
      // The row got past authentication, so the key was good then; key state is not policy.
      key: { revokedAt: null, expiresAt: null },
      now: row.ts,
      facts,
      fxRates: o.fxRates,
    });
    const base = { id: row.id, ts: row.ts.toISOString(), tool: row.tool, was };
    if (!d.allow && row.decision === 'allowed') {
      r.now_denied++;
      bump(r.now_denied_by_code, d.code);
      const usd = Math.max(row.usd_micros, row.cost_micros + row.reserved_micros);
      r.usd_refused_micros += usd;
      if (deniedShown++ < sample)
        r.changes.push({ ...base, now: d.code, message: d.message, usd_micros: usd });
    } else if (d.allow && RULE_CODES.has(was)) {
      r.now_allowed++;
      bump(r.now_allowed_by_code, was);
      if (allowedShown++ < sample) r.changes.push({ ...base, now: 'allowed' });
    } else r.unchanged++;
  }

  return {
    add,
    result(): ReplayReport {
      r.changes.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
      return r;
    },
  };
}
