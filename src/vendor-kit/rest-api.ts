// What a vendor folder declares for the REST front door (its http.ts): the endpoints it governs — each a
// ToolDefinition the one pipeline runs — how an SDK presents the vault key, and the vendor's error shape.
import type { IncomingHttpHeaders } from 'node:http';
import { z } from 'zod';
import type { RuleName } from '../policy/schema.js';
import type { ToolRules } from '../policy/rule-set.js';
import type { PolicyFacts } from '../policy/evaluate.js';
import type {
  AuditHasher,
  CallContext,
  Effect,
  LookupContext,
  PendingCall,
  Pricing,
  ReconcileContext,
  Reconciled,
  ToolDefinition,
} from '../pipeline/tool.js';
import { checkedFields, closedParams, type Passthrough } from './closed-params.js';
import type { ForwardedResponse } from './forward.js';

export type HttpMethod = 'GET' | 'POST' | 'DELETE';

/** A form or query decoded flat (`metadata[k]` stays one key); a repeated key becomes a list. */
export const flatForm = z.record(z.string(), z.union([z.string(), z.array(z.string())]));
export type FlatForm = z.infer<typeof flatForm>;

/** A write's query: none at all. */
const noQuery = flatForm.refine((q) => Object.keys(q).length === 0, {
  error: 'query parameters are not allowed on this endpoint; send every parameter in the request body',
});

/** The agent's request as the pipeline sees it: path parameters, query, body and the headers a vendor forwards. */
export interface RestRequest<Body> {
  params: Record<string, string>;
  query: FlatForm;
  body: Body;
  headers: Record<string, string>;
}

/** What an endpoint answers the front door: the vendor's status, allowed headers and (scrubbed) body. */
export const restOutput = z.object({
  status: z.number().int(),
  headers: z.record(z.string(), z.string()),
  body: z.string(),
});
export type RestOutput = z.infer<typeof restOutput>;

/** A refusal told in the vendor's own error shape, so its SDK raises its usual typed error. */
export interface VendorRefusal {
  status: number;
  /** The leash code (refusal table), e.g. `amount_over_limit`. */
  code: string;
  message: string;
  /** The call's outcome is unknown (the vendor may have acted): a retry with the same idempotency key is safe. */
  outcomeUnknown?: boolean;
}

/** One vendor's REST front door. */
export interface VendorApi {
  vendor: string;
  /** Path prefixes this vendor's API owns; an unmatched path under one is refused (403), never 404'd or forwarded. */
  prefixes: readonly string[];
  endpoints: readonly Endpoint[];
  /** How the vendor's SDKs send the API key; here it carries the vault key. */
  presentedKey(headers: IncomingHttpHeaders): string | undefined;
  /** Request headers passed on to the vendor (lower-case), e.g. `stripe-version`. */
  forwardHeaders: readonly string[];
  /** The body format the vendor takes. */
  body: 'form' | 'json';
  /** The vendor's error body (and headers) for a refusal. */
  refusal(r: VendorRefusal): { body: unknown; headers?: Record<string, string> };
}

/** An endpoint is a tool the MCP door never lists: `name` is `<vendor>:<METHOD> <path template>`. */
export interface Endpoint extends ToolDefinition {
  method: HttpMethod;
  /** e.g. `/v1/payment_intents/{id}`; a parameter may carry a literal suffix (`{Sid}.json`). */
  path: string;
}

/** The operation id a policy and the audit log use for an endpoint. */
export const endpointName = (vendor: string, method: string, path: string) => `${vendor}:${method} ${path}`;

/** What a vendor's http.ts writes for one endpoint; the rest is filled in the same way for every endpoint. */
export interface EndpointSpec<Body, Facts, Client> {
  vendor: string;
  method: HttpMethod;
  path: string;
  description: string;
  /** The checked fields of the body (an object schema); any other parameter must be in `passthrough`. */
  body: z.ZodType<Body>;
  /**
   * Body parameters forwarded unread, from the vendor's API reference (`name`, or `name[*]` for every key under it,
   * e.g. `metadata[*]`). Anything neither checked nor listed is refused as invalid_input, naming it.
   */
  passthrough?: readonly Passthrough[];
  /** A read's query parameters, forwarded unread (same form; default none). A write takes no query at all. */
  queryParams?: readonly Passthrough[];
  /** Path parameters' schema (default: any text). */
  params?: z.ZodType<Record<string, string>>;
  /** Top-level input fields kept only as length and hash when the request is invalid (e.g. `body`). */
  sensitive?: readonly string[];
  rules: readonly RuleName[];
  ownRules?: ToolRules;
  /** The vendor honours the Idempotency-Key this endpoint forwards (see ToolDefinition.dedupesByKey). */
  dedupesByKey?: boolean;
  lookup?: (ctx: LookupContext<Client>, req: RestRequest<Body>) => Promise<Facts>;
  facts: (req: RestRequest<Body>, looked: Facts) => PolicyFacts;
  estimateCostMicros?: (
    req: RestRequest<Body>,
    looked: Facts,
    pricing: Pricing,
    amountMicros: number | undefined,
  ) => number;
  call: (ctx: CallContext<Client>, req: RestRequest<Body>, looked: Facts) => Promise<Effect<RestOutput>>;
  reconcile?: (ctx: ReconcileContext<Client>, row: PendingCall) => Promise<Reconciled>;
  redact?: (req: RestRequest<Body>, h: AuditHasher) => Record<string, unknown>;
}

/** Declares an endpoint: a ToolDefinition named after the route, read-only for GET, in no MCP list. */
export function defineEndpoint<Body, Facts, Client>(o: EndpointSpec<Body, Facts, Client>): Endpoint {
  const operation = `${o.method} ${o.path}`;
  const read = o.method === 'GET';
  const input = z.strictObject({
    params: o.params ?? z.record(z.string(), z.string()),
    // A write's parameters go in its body, which policy reads: a query string (never read, and a way to make each
    // identical call look new to the loop guard) is refused, not forwarded.
    query: read
      ? closedParams({ operation, checked: [], passthrough: o.queryParams ?? [] }).pipe(flatForm)
      : noQuery,
    body: closedParams({ operation, checked: checkedFields(o.body), passthrough: o.passthrough ?? [] }).pipe(
      o.body,
    ),
    headers: z.record(z.string(), z.string()),
  });
  const endpoint: ToolDefinition<RestRequest<Body>, Facts, RestOutput, Client> = {
    name: endpointName(o.vendor, o.method, o.path),
    title: operation,
    description: o.description,
    vendor: o.vendor,
    operation,
    annotations: {
      readOnlyHint: read,
      destructiveHint: o.method !== 'GET',
      idempotentHint: read,
      openWorldHint: true,
    },
    input,
    output: restOutput,
    rules: o.rules,
    facts: o.facts,
    estimateCostMicros: o.estimateCostMicros ?? (() => 0),
    call: o.call,
    redact: o.redact ?? ((r) => ({ params: r.params, query: r.query, body: r.body })),
  };
  if (o.ownRules) endpoint.ownRules = o.ownRules;
  if (o.dedupesByKey) endpoint.dedupesByKey = true;
  if (o.lookup) endpoint.lookup = o.lookup;
  if (o.reconcile) endpoint.reconcile = o.reconcile;
  if (o.sensitive) endpoint.sensitive = o.sensitive;
  return Object.assign(endpoint as ToolDefinition, { method: o.method, path: o.path });
}

/**
 * The Effect of a forwarded answer. A 4xx (or any error on a read) passes through to the agent and settles as
 * failed. A write's 5xx, and a write's 2xx that is not a JSON object or lacks what leash needs (`readable`, by
 * default the object id), are `unknown`: the vendor may have acted, so the pipeline keeps the reservation, answers
 * with an unknown outcome in the vendor's error shape and leaves the row to reconcile. Only a readable 2xx spends.
 */
export function forwardedEffect(
  res: ForwardedResponse,
  o: {
    read: boolean;
    requestIdHeader: string;
    costMicros?: number;
    costStatus?: 'settled' | 'pending';
    objectId?: string | undefined;
    amount?: { minor: number; currency: string } | undefined;
    /** The vendor marked the answer as a replay of an earlier request with the same idempotency key. */
    replayed?: boolean | undefined;
    /** A write's 2xx holds what leash needs to settle it (default: an object id was found in a JSON object). */
    readable?: boolean;
  },
): Effect<RestOutput> {
  const requestId = res.headers[o.requestIdHeader];
  const base: Effect<RestOutput> = {
    output: res,
    costMicros: 0,
    costStatus: 'settled',
    httpStatus: res.status,
    ...(requestId ? { vendorRequestId: requestId } : {}),
  };
  if (res.status >= 400) return { ...base, outcome: res.status >= 500 && !o.read ? 'unknown' : 'failed' };
  // A redirect or other non-2xx to a write is no answer leash can settle either.
  const readable = res.status < 300 && (o.readable ?? (jsonObject(res.body) !== undefined && !!o.objectId));
  if (!o.read && !readable) return { ...base, outcome: 'unknown', unreadable: true };
  return {
    ...base,
    costMicros: o.costMicros ?? 0,
    costStatus: o.costStatus ?? 'settled',
    ...(o.objectId ? { vendorObjectId: o.objectId } : {}),
    ...(o.amount ? { amount: o.amount } : {}),
    ...(o.replayed ? { replayed: true } : {}),
  };
}

/** A JSON body's object, or undefined (the vendor's answer is passed on as text either way). */
export function jsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** A parsed form body back as a flat form (every value of a decoded form is text or a list of text). */
export function formOf(body: Readonly<Record<string, unknown>>): FlatForm {
  const out: FlatForm = {};
  for (const [k, v] of Object.entries(body)) {
    if (typeof v === 'string') out[k] = v;
    else if (Array.isArray(v)) out[k] = v.map(String);
  }
  return out;
}

/** Re-encodes a flat form (what policy checked is exactly what is sent). */
export function encodeForm(form: FlatForm): string {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(form))
    for (const item of Array.isArray(v) ? v : [v]) out.append(k, item);
  return out.toString();
}
