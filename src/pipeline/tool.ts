import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import type { z } from 'zod';
import type { ApprovalView } from '../approvals/view.js';
import type { AuditHasher } from '../audit/audit-hash.js';
import type { Config } from '../config/config.js';
import type { BudgetView } from '../ledger/budget.js';
import type { ToolRule, ToolRuleSpec } from '../policy/compile.js';
import type { Pricing } from '../policy/decide-call.js';
import type { PolicyFacts } from '../policy/evaluate.js';
import type { ToolRules } from '../policy/rule-set.js';
import type { RuleName } from '../policy/schema.js';
import type { VendorSpec } from './vendor-spec.js';

export type { ApprovalView, AuditHasher, BudgetView, Pricing, VendorSpec };

/** The prices config holds, as tools read them. */
export function pricingFrom(config: Config): Pricing {
  return { fxRates: config.fxRates, prices: config.prices };
}

export interface LookupContext<Client> {
  client: Client;
  rule: ToolRule;
  account: string | undefined;
  sandbox: boolean;
  /** This key's own approval request by id (undefined when there is none); set for calls, not for reconcile. */
  approval?(id: string): Promise<ApprovalView | undefined>;
}

export interface CallContext<Client> extends LookupContext<Client> {
  /** Derived from the audit row id: a replay with the same key has no second effect. */
  idempotencyKey: string;
  pricing: Pricing;
  budget(): Promise<BudgetView>;
  /**
   * This key's own approval request by id (undefined when there is none); set for calls, not for reconcile. With
   * `waitSeconds`, a pending request is answered once decided (or when the wait runs out or the caller goes away).
   */
  approval?(id: string, waitSeconds?: number): Promise<ApprovalView | undefined>;
}

/** What reconcile adds to a call's context. */
export interface ReconcileContext<Client> extends CallContext<Client> {
  /** Of these vendor object ids, those another audit row already owns: never credit one of them again. */
  attributed(ids: readonly string[]): Promise<ReadonlySet<string>>;
  /** The hash `redact` stored (HMAC under the audit key), to match a vendor object to the row. */
  auditHash: AuditHasher;
}

/** What a successful vendor call produced. */
export interface Effect<Out> {
  output: Out;
  costMicros: number;
  /** `pending` when the vendor prices it later (after delivery, say); `reconcile` settles it. */
  costStatus: 'settled' | 'pending';
  vendorObjectId?: string;
  vendorRequestId?: string;
  httpStatus?: number;
  amount?: { minor: number; currency: string };
  /**
   * The vendor answered with an error that goes back to the caller (REST pass-through): `failed`. `unknown`: an
   * answer leash cannot act on (a 5xx to a write; with `unreadable`, a body it cannot read): the pipeline answers it
   * as an unknown outcome, reservation kept, for reconcile.
   */
  outcome?: 'failed' | 'unknown';
  unreadable?: boolean;
  /**
   * The vendor marked the answer as a replay of an earlier request with the same idempotency key (Stripe's
   * `Idempotent-Replayed: true`): settle it as a replay of that call when another row of the key has it.
   */
  replayed?: boolean;
}

/** The audit row fields reconcile hands back to the tool. */
export interface PendingCall {
  id: string;
  /** When the call was admitted. */
  ts: Date;
  idempotencyKey: string;
  request: Record<string, unknown> | null;
  /** The amount (minor units) admitted for this call, as policy saw it. */
  amount: number | null;
  vendorObjectId: string | null;
  outcome: 'pending' | 'unknown' | 'succeeded';
  costStatus: string;
  reservedMicros: number;
  costMicros: number;
}

export type Reconciled =
  | {
      outcome: 'succeeded';
      costMicros: number;
      costStatus: 'settled' | 'pending';
      vendorObjectId?: string;
      amount?: { minor: number; currency: string };
    }
  | { outcome: 'failed'; error: string }
  | { outcome: 'unknown'; /** Why, for the operator (e.g. several messages match). */ note?: string };

/**
 * A governed tool. It declares what it needs; the pipeline does authentication, policy, budget, audit and
 * settlement the same way for every tool. A tool never touches the database, the audit log or process.env.
 */
export interface ToolDefinition<In = unknown, Facts = unknown, Out = unknown, Client = unknown> {
  name: string;
  title: string;
  description: string;
  /** Vendor name, or undefined for leash's own tools (e.g. get_budget). */
  vendor: string | undefined;
  /** e.g. "POST /v1/refunds", for the audit log. */
  operation: string;
  annotations: ToolAnnotations;
  input: z.ZodObject;
  output: z.ZodObject;
  /** Generic policy rules that apply to this tool (any tool also takes `credential`). */
  rules: readonly RuleName[];
  /** Policy rules the tool declares itself (schema fragment, required keys, a pure check evaluate() runs). */
  ownRules?: ToolRules;
  /** False for tools that should not use up the request cap (budget lookups). Default true. */
  countsAsRequest?: boolean;
  /**
   * The vendor honours the idempotency key this tool sends (Stripe, Resend; not Twilio's messages): a request
   * repeated with the same key has no second effect. While a call's outcome is unknown, an identical call of the same
   * key is admitted only when this is true and it carries the same key (the vendor answers with the first outcome).
   */
  dedupesByKey?: boolean;
  /**
   * The input schema as this policy advertises it (limits as JSON Schema bounds), and sentences stating the
   * limits. Advertisement only: input is validated with `input`, and policy limits are enforced (and audited) by evaluate().
   */
  narrow?(rule: ToolRule): { input: z.ZodObject; limits: string[] };
  /** Read-only vendor lookups the policy needs (e.g. a payment's customer). Failures deny. */
  lookup?(ctx: LookupContext<Client>, input: In): Promise<Facts>;
  /**
   * For a dry run (`leash policies test`), which looks nothing up: what `lookup` would find, from the facts an
   * operator gives for it (a payment's customer and amount). Pure. A tool with a lookup and without this cannot
   * be decided by a dry run.
   */
  assumeLookup?(given: Readonly<Record<string, unknown>>, input: In): AssumedLookup<Facts>;
  /** The facts policy checks, from the input and the lookup. */
  facts(input: In, looked: Facts): PolicyFacts;
  /** Estimated cost in micro-USD, reserved before the call. `amountMicros` is the USD value evaluate computed. */
  estimateCostMicros(input: In, looked: Facts, pricing: Pricing, amountMicros: number | undefined): number;
  call(ctx: CallContext<Client>, input: In, looked: Facts): Promise<Effect<Out>>;
  /** Settles a call left pending/unknown, or a cost left pending: replay idempotently or look the object up. */
  reconcile?(ctx: ReconcileContext<Client>, row: PendingCall): Promise<Reconciled>;
  /**
   * What of the input the audit row keeps. Default: all of it. Hash what must be matched later (an SMS body) with
   * `h` (HMAC under the server's audit key), never a plain sha-256: a short secret's plain hash can be brute-forced.
   */
  redact?(input: In, h: AuditHasher): Record<string, unknown>;
  /** Top-level fields never stored, even when the input is invalid (then only their length and audit hash are). */
  sensitive?: readonly string[];
}

/** What a dry run takes a tool's lookup to have found, or why it cannot say. */
export type AssumedLookup<Facts> =
  | { looked: Facts }
  /** Facts the operator must give for the call to be decided (e.g. `amount`: a refund's amount and currency). */
  | { missing: readonly string[] }
  /** Given facts that do not parse, each naming its field (e.g. `facts.amount_refunded`). */
  | { issues: readonly InputIssue[] };

/** One problem with a call's input, naming the field. */
export interface InputIssue {
  field: string;
  problem: string;
}

/**
 * A call's arguments parsed with the tool's own schema (top-level nulls already dropped), as the pipeline's
 * validate stage and the dry run both do: the input, or each issue naming its field, and one sentence of them.
 */
export function parseInput(
  tool: ToolDefinition,
  args: unknown,
): { ok: true; input: unknown } | { ok: false; issues: InputIssue[] } {
  const parsed = tool.input.safeParse(args);
  if (parsed.success) return { ok: true, input: parsed.data };
  return {
    ok: false,
    issues: parsed.error.issues.map((i) => ({ field: i.path.join('.') || '(input)', problem: i.message })),
  };
}

/** The invalid_input sentence for a call's issues. */
export function invalidInputMessage(tool: string, issues: readonly InputIssue[]): string {
  return `invalid input for ${tool}: ${issues.map((i) => `${i.field}: ${i.problem}`).join('; ')}`;
}

/**
 * Arguments with top-level nulls dropped: strict function calling sends null for every optional field it
 * leaves out, so null means omitted. Used for validation and for the loop guard's arguments hash alike.
 */
export function withoutNulls(args: unknown): unknown {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return args;
  if (!Object.values(args).includes(null)) return args;
  return Object.fromEntries(Object.entries(args).filter(([, v]) => v !== null));
}

/** Erases a tool's type parameters for the catalog list; each tool keeps its own types inside. */
export function defineTool<In, Facts, Out, Client>(
  tool: ToolDefinition<In, Facts, Out, Client>,
): ToolDefinition {
  return tool; // method parameters are bivariant, so a typed tool fits the erased list
}

/** The catalog: every tool and vendor leash knows. */
export interface Catalog {
  tools: ReadonlyMap<string, ToolDefinition>;
  vendors: ReadonlyMap<string, VendorSpec>;
  /** The vendors' REST endpoints (`<vendor>:<METHOD> <path>`): called only by the REST front door, never listed as tools. */
  endpoints?: ReadonlyMap<string, ToolDefinition>;
}

/** A tool (MCP door) or an endpoint (REST door) by name. */
export function operationOf(
  catalog: Catalog,
  name: string,
  door: 'mcp' | 'http',
): ToolDefinition | undefined {
  return door === 'http' ? catalog.endpoints?.get(name) : catalog.tools.get(name);
}

/** What the policy compiler needs to know of the catalog: each tool's vendor and rules. */
export function ruleSpecs(catalog: Catalog): ReadonlyMap<string, ToolRuleSpec> {
  return new Map(
    [...catalog.tools.values(), ...(catalog.endpoints?.values() ?? [])].map((t) => {
      const spec: ToolRuleSpec = { rules: t.rules };
      if (t.vendor) spec.vendor = t.vendor;
      if (t.ownRules) spec.own = t.ownRules;
      return [t.name, spec];
    }),
  );
}
