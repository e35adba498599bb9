// Replays audit rows through a candidate policy's rules (pure), held calls too: which would now be allowed, held
// or denied. It decides each row on the facts the pipeline stored for it, with the pipeline's own decideFacts.
import type { CompiledPolicy } from '../policy/compile.js';
import { decideFacts, undecidedRules, verdictOf, type Verdict } from '../policy/decide-call.js';
import type { PolicyFacts } from '../policy/evaluate.js';
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
  /** allowed | held | denied */
  decision: string;
  reason: string | null;
  request: unknown;
  amount: number | null;
  currency: string | null;
  metadata: unknown;
  /** The USD value admitted (0 for denied and held rows). */
  usd_micros: number;
  cost_micros: number;
  reserved_micros: number;
  /** Who called (for the tripwire backtest's scopes); absent on rows of no valid key. */
  key_id?: string | null;
  agent?: string | null;
  run_id?: string | null;
}

/**
 * How a replayed row counts for the candidate's tripwires: allowed (calls, spend, recipients), denied (a refusal
 * denials_per_minute counts) or none (held for a person; refused for the key's own state or leash's trouble).
 */
export type ReplaySide = 'allowed' | 'denied' | 'none';

/** Refusals admission and the denial statement do not count as the agent's denials (leash_record_denial.sql). */
const NOT_DENIALS = new Set([
  'key_invalid',
  'key_revoked',
  'key_expired',
  'key_paused',
  'tripwire_tripped',
  'facts_unavailable',
  'credential_unavailable',
  'internal_error',
  'approval_required',
]);

/** How a row counted when it happened. */
function originalSide(row: ReplayRow): ReplaySide {
  if (row.decision === 'allowed') return 'allowed';
  if (row.decision === 'held') return 'none';
  return NOT_DENIALS.has(row.reason ?? '') ? 'none' : 'denied';
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
  'parameter_not_allowed',
]);
/** Refusals of a call the policy held for a person: the person (or the clock) said no, the policy said hold. */
const APPROVAL_CODES = new Set(['approval_denied', 'approval_expired']);
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
  /** allowed, approved (held, then approved by a person), held, or the code it was denied with */
  was: string;
  /** allowed, held, or the code the candidate denies it with */
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
  /** Calls allowed or held that the candidate denies, by its code. */
  now_denied: number;
  now_denied_by_code: Record<string, number>;
  /** USD that calls now denied had been admitted at: what the candidate would have refused. */
  usd_refused_micros: number;
  /** Calls denied or held (approved or not) that the candidate allows outright, by what they were. */
  now_allowed: number;
  now_allowed_by_code: Record<string, number>;
  /** Calls allowed or denied that the candidate holds for a person, by what they were. */
  now_held: number;
  now_held_by_code: Record<string, number>;
  /** What the candidate decides for every replayed row: allowed, held for a person, or denied (by code). */
  decisions: { allowed: number; held: number; denied: number; denied_by_code: Record<string, number> };
  /** Up to `sample` rows of each kind of change, oldest first. */
  changes: ReplayChange[];
  note: string;
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
 * The facts the policy saw for a row, from what the row holds: the facts the pipeline stored (`metadata.facts`,
 * exactly what it decided on); for rows from before it stored them, the tool's own `facts()` over the stored
 * request when the tool needs no vendor lookup, the amount and currency columns, and what a denial recorded.
 * Nothing is guessed.
 */
export function rowFacts(
  row: ReplayRow,
  tool: ReplayTool | undefined,
): { facts: PolicyFacts; complete: boolean } {
  const meta = isRecord(row.metadata) ? row.metadata : {};
  if (isRecord(meta.facts)) return { facts: factsFrom(meta.facts), complete: true };
  let facts: PolicyFacts = {};
  let complete = false;
  if (tool && !tool.lookup && isRecord(row.request)) {
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

/** What the row's call was under the policy it ran under: the verdict its rules gave, and a label for it. */
function wasOf(row: ReplayRow): { verdict: Verdict | 'admission'; label: string } | undefined {
  const meta = isRecord(row.metadata) ? row.metadata : {};
  if (row.decision === 'allowed') {
    const approval = isRecord(meta.approval) ? meta.approval : {};
    // Admitted by spending a person's approval: the rules held it.
    return approval.status === 'used'
      ? { verdict: 'held', label: 'approved' }
      : { verdict: 'allowed', label: 'allowed' };
  }
  if (row.decision === 'held') return { verdict: 'held', label: 'held' };
  const code = row.reason ?? 'denied';
  if (RULE_CODES.has(code)) return { verdict: 'denied', label: code };
  if (APPROVAL_CODES.has(code)) return { verdict: 'held', label: code };
  // The rules let it through (allowed or held); caps or the loop guard refused it.
  if (ADMISSION_CODES.has(code)) return { verdict: 'admission', label: code };
  return undefined;
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
    now_held: 0,
    now_held_by_code: {},
    decisions: { allowed: 0, held: 0, denied: 0, denied_by_code: {} },
    changes: [],
    note: 'policy rules only: caps, request limits and the loop guard are decided at admission and are not replayed',
  };
  const sample = o.sample ?? 20;
  const shown = { allowed: 0, held: 0, denied: 0 };

  /** Adds a row; returns how it counts under the candidate (for its tripwires). */
  function add(row: ReplayRow): ReplaySide {
    r.rows++;
    const was = wasOf(row);
    if (!was) {
      r.not_replayed++;
      return originalSide(row);
    }
    const rule = o.policy.tools.get(row.tool);
    const tool = o.tools.get(row.tool);
    const { facts, complete } = rowFacts(row, tool);
    const gaps = rule ? undecidedRules(rule, facts, complete) : [];
    if (gaps.length) {
      r.undecidable++;
      for (const g of gaps) bump(r.undecidable_by_rule, g);
      return originalSide(row);
    }
    r.replayed++;
    const d = decideFacts({
      tool: { name: row.tool, ownRules: tool?.ownRules },
      policy: o.policy,
      // The row got past authentication, so the key was good then; key state is not policy.
      key: { revokedAt: null, expiresAt: null },
      now: row.ts,
      facts,
      fxRates: o.fxRates,
    });
    const now = verdictOf(d);
    r.decisions[now]++;
    if (!d.allow) bump(r.decisions.denied_by_code, d.code);
    // Caps still apply to whatever the rules would let through; a call refused by them stays refused.
    const side: ReplaySide =
      now === 'held' ? 'none' : now === 'denied' || was.verdict === 'admission' ? 'denied' : 'allowed';
    if (was.verdict === now || was.verdict === 'admission') {
      r.unchanged++;
      return side;
    }
    const base = { id: row.id, ts: row.ts.toISOString(), tool: row.tool, was: was.label };
    const usd = Math.max(row.usd_micros, row.cost_micros + row.reserved_micros);
    if (!d.allow) {
      r.now_denied++;
      bump(r.now_denied_by_code, d.code);
      r.usd_refused_micros += usd;
      if (shown.denied++ < sample)
        r.changes.push({ ...base, now: d.code, message: d.message, usd_micros: usd });
    } else if (now === 'held') {
      r.now_held++;
      bump(r.now_held_by_code, was.label);
      if (shown.held++ < sample) r.changes.push({ ...base, now, ...(usd ? { usd_micros: usd } : {}) });
    } else {
      r.now_allowed++;
      bump(r.now_allowed_by_code, was.label);
      if (shown.allowed++ < sample) r.changes.push({ ...base, now, ...(usd ? { usd_micros: usd } : {}) });
    }
    return side;
  }

  return {
    add,
    result(): ReplayReport {
      r.changes.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
      return r;
    },
  };
}
