// Stripe's own REST API as leash's second front door: the endpoints a policy may list under `vendors.stripe.http`,
// each checked with the same rule code as the typed tools, then forwarded with the server-held key.
import { z } from 'zod';
import { toMicroUsd } from '../../src/policy/money.js';
import { defineRules } from '../../src/policy/rule-set.js';
import type { PolicyFacts } from '../../src/policy/evaluate.js';
import type { CallContext, LookupContext, Reconciled } from '../../src/pipeline/tool.js';
import type { ForwardedResponse } from '../../src/vendor-kit/forward.js';
import {
  defineEndpoint,
  encodeForm,
  flatForm,
  formOf,
  forwardedEffect,
  jsonObject,
  type FlatForm,
  type RestRequest,
  type VendorApi,
} from '../../src/vendor-kit/rest-api.js';
import type { StripeClient } from './client.js';
import { stripePresentedKey, stripeRefusal } from './http-shape.js';
import {
  exactlyOneMessage,
  exactlyOnePayment,
  lookupPayment,
  paymentRef,
  type PaymentFacts,
} from './payment.js';

const REQUEST_ID = 'request-id';
const minorAmount = z
  .string()
  .regex(/^[1-9]\d{0,7}$/, 'expected a positive amount in minor units, at most 8 digits');
const currency = z.string().regex(/^[a-zA-Z]{3}$/, 'expected a three-letter currency code');
const customerId = z
  .string()
  .max(255)
  .regex(/^cus_[A-Za-z0-9_]+$/, 'expected a Customer id like "cus_…"');

/** The request as Stripe gets it: the checked form re-encoded, the caller's API version and idempotency key. */
function send(
  ctx: CallContext<StripeClient> | LookupContext<StripeClient>,
  method: string,
  path: string,
  req: Pick<RestRequest<unknown>, 'query' | 'headers'>,
  form?: FlatForm,
  idempotencyKey?: string,
): Promise<ForwardedResponse> {
  const headers: Record<string, string> = {};
  const version = req.headers['stripe-version'];
  if (version) headers['stripe-version'] = version;
  if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
  if (form) headers['content-type'] = 'application/x-www-form-urlencoded';
  return ctx.client.forward({
    method,
    path,
    query: new URLSearchParams(encodeForm(req.query)),
    ...(form ? { body: encodeForm(form) } : {}),
    headers,
  });
}

/**
 * The money a successful answer moved: its amount in minor units, currency and USD value; and whether Stripe says it
 * replays an earlier request with this idempotency key (then it moved that request's money, not new money).
 */
function moved(res: ForwardedResponse, fxRates: Readonly<Record<string, number>>) {
  const body = res.status < 300 ? jsonObject(res.body) : undefined;
  const amount = body?.amount;
  const cur = body?.currency;
  const objectId = typeof body?.id === 'string' ? body.id : undefined;
  const replayed = res.headers['idempotent-replayed'] === 'true';
  if (typeof amount !== 'number' || typeof cur !== 'string') return { objectId, replayed };
  // evaluate() refused currencies without a rate, so the conversion is defined here.
  return {
    objectId,
    replayed,
    amount: { minor: amount, currency: cur },
    costMicros: toMicroUsd(amount, cur, fxRates) ?? 0,
  };
}

/** A write's answer settles only with the object's id and the money it moved: without them caps would miss it. */
const readable = (m: ReturnType<typeof moved>) => m.objectId !== undefined && m.amount !== undefined;

/** Replays a write with the idempotency key Stripe saw: the original object comes back, never a second one. */
async function replay(
  ctx: CallContext<StripeClient>,
  path: string,
  form: FlatForm,
  fxRates: Readonly<Record<string, number>>,
): Promise<Reconciled> {
  const res = await send(ctx, 'POST', path, { query: {}, headers: {} }, form, ctx.idempotencyKey);
  if (res.status >= 500) return { outcome: 'unknown' };
  // idempotency_key_in_use: a request with this key (a caller's retry) is in flight; it says nothing of this one.
  if (res.status === 409)
    return { outcome: 'unknown', note: 'a request with its idempotency key is in flight' };
  if (res.status >= 400) return { outcome: 'failed', error: `Stripe answered HTTP ${res.status}` };
  const m = moved(res, fxRates);
  if (res.status >= 300 || !readable(m))
    return { outcome: 'unknown', note: `Stripe answered HTTP ${res.status} with a body leash cannot read` };
  return {
    outcome: 'succeeded',
    costMicros: m.costMicros ?? 0,
    costStatus: 'settled',
    ...(m.objectId ? { vendorObjectId: m.objectId } : {}),
    ...(m.amount ? { amount: m.amount } : {}),
  };
}

const storedForm = (request: Record<string, unknown> | null): FlatForm | undefined => {
  const parsed = flatForm.safeParse(request?.body);
  return parsed.success ? parsed.data : undefined;
};

// ---- POST /v1/refunds: as issue_refund (max_amount_usd, customers), the payment looked up first.

const refundBody = z
  .looseObject({ ...paymentRef, amount: minorAmount.optional() })
  .refine(exactlyOnePayment, exactlyOneMessage);
type RefundBody = z.infer<typeof refundBody>;
/**
 * Create-refund parameters forwarded unread, from Stripe's API reference (OpenAPI spec v2596, stripe-node 23.1's
 * RefundCreateParams). Not forwarded: `customer`, `origin` and `currency` (a customer-balance refund: policy's customer
 * and currency come from the payment looked up), `refund_application_fee` and `reverse_transfer` (Connect: money
 * moved between accounts that no cap counts), `instructions_email` (Stripe mails an address no rule checks).
 */
const REFUND_PASSTHROUGH = ['reason', 'metadata[*]', 'expand[*]'];
const refundAmount = (b: RefundBody, p: PaymentFacts) => (b.amount ? Number(b.amount) : p.refundable);

const createRefund = defineEndpoint<RefundBody, PaymentFacts, StripeClient>({
  vendor: 'stripe',
  method: 'POST',
  path: '/v1/refunds',
  dedupesByKey: true,
  description: 'Create a refund of a PaymentIntent or Charge (as issue_refund).',
  body: refundBody,
  passthrough: REFUND_PASSTHROUGH,
  rules: ['max_amount_usd', 'customers'],
  lookup: (ctx, req) => lookupPayment(ctx.client, req.body),
  facts: (req, p) => ({
    amount: { minor: refundAmount(req.body, p), currency: p.currency },
    customer: p.customer,
  }),
  estimateCostMicros: (_req, _p, _pricing, usd) => usd ?? 0,
  async call(ctx, req, p) {
    // The amount policy checked is the amount Stripe gets, even when the caller left it to Stripe.
    const form: FlatForm = { ...formOf(req.body), amount: String(refundAmount(req.body, p)) };
    const res = await send(ctx, 'POST', '/v1/refunds', req, form, ctx.idempotencyKey);
    const m = moved(res, ctx.pricing.fxRates);
    return forwardedEffect(res, { read: false, requestIdHeader: REQUEST_ID, ...m, readable: readable(m) });
  },
  async reconcile(ctx, row) {
    const form = storedForm(row.request);
    if (!form || row.amount === null) return { outcome: 'unknown' };
    return replay(ctx, '/v1/refunds', { ...form, amount: String(row.amount) }, ctx.pricing.fxRates);
  },
});

// ---- POST /v1/payment_intents: max_amount_usd, customers, and `capture_method: manual` when the policy sets it.

type IntentFacts = PolicyFacts & { capture_method: string | null };

/** The payment-intent endpoint's own rule: when set, every intent must be created for manual capture. */
const intentRules = defineRules({
  shape: { capture_method: z.literal('manual').optional() },
  compile: (raw) => ({ manual: raw.capture_method === 'manual' }),
  check(r, facts: IntentFacts) {
    if (!r.manual || facts.capture_method === 'manual') return undefined;
    return {
      code: 'parameter_not_allowed',
      message: `this policy requires capture_method=manual (got ${facts.capture_method ?? 'none'})`,
      details: { parameter: 'capture_method', required: 'manual' },
    };
  },
});

const intentBody = z.looseObject({
  amount: minorAmount,
  currency,
  customer: customerId.optional(),
  capture_method: z.string().optional(),
});
type IntentBody = z.infer<typeof intentBody>;
/**
 * Create-PaymentIntent parameters forwarded unread, from Stripe's API reference (OpenAPI spec v2596, stripe-node 23.1's
 * PaymentIntentCreateParams; `payment_method_types` from earlier API versions). Not forwarded: `customer_account` (a
 * payer the customers rule does not read), `payment_method_options` (its per-method `capture_method` overrides the
 * checked one), `application_fee_amount`, `on_behalf_of`, `transfer_data` and `transfer_group` (Connect: money routed
 * to another account), `amount_details`, `payment_details` and `hooks` (amounts and tax policy does not read),
 * `receipt_email` (Stripe mails an address no rule checks).
 */
const INTENT_PASSTHROUGH = [
  'allowed_payment_method_types[*]',
  'automatic_payment_methods[*]',
  'confirm',
  'confirmation_method',
  'confirmation_token',
  'description',
  'error_on_requires_action',
  'excluded_payment_method_types[*]',
  'expand[*]',
  'mandate',
  'mandate_data[*]',
  'metadata[*]',
  'off_session',
  'payment_method',
  'payment_method_configuration',
  'payment_method_data[*]',
  'payment_method_types[*]',
  'radar_options[*]',
  'return_url',
  'setup_future_usage',
  'shipping[*]',
  'statement_descriptor',
  'statement_descriptor_suffix',
  'use_stripe_sdk',
];

const createIntent = defineEndpoint<IntentBody, undefined, StripeClient>({
  vendor: 'stripe',
  method: 'POST',
  path: '/v1/payment_intents',
  dedupesByKey: true,
  description: 'Create a PaymentIntent; its amount counts against the caps like a refund.',
  body: intentBody,
  passthrough: INTENT_PASSTHROUGH,
  rules: ['max_amount_usd', 'customers'],
  ownRules: intentRules,
  facts: (req): IntentFacts => ({
    amount: { minor: Number(req.body.amount), currency: req.body.currency.toLowerCase() },
    customer: req.body.customer ?? null,
    capture_method: req.body.capture_method ?? null,
  }),
  estimateCostMicros: (_req, _l, _pricing, usd) => usd ?? 0,
  async call(ctx, req) {
    const res = await send(ctx, 'POST', '/v1/payment_intents', req, formOf(req.body), ctx.idempotencyKey);
    const m = moved(res, ctx.pricing.fxRates);
    return forwardedEffect(res, { read: false, requestIdHeader: REQUEST_ID, ...m, readable: readable(m) });
  },
  async reconcile(ctx, row) {
    const form = storedForm(row.request);
    return form ? replay(ctx, '/v1/payment_intents', form, ctx.pricing.fxRates) : { outcome: 'unknown' };
  },
});

// ---- Reads. With a `customers` rule the object is read first (that read is the answer: one vendor call).

const noBody = z.looseObject({});
const idOf = (v: unknown) =>
  typeof v === 'string'
    ? v
    : typeof v === 'object' && v !== null && 'id' in v && typeof v.id === 'string'
      ? v.id
      : null;

function read(
  path: string,
  what: string,
  idPattern: RegExp,
  customerOf: (body: Record<string, unknown>, id: string) => unknown,
  withCustomers = true,
  // Retrieve's query parameters in Stripe's API reference (OpenAPI spec v2596).
  queryParams: readonly string[] = ['expand[*]'],
) {
  const at = (req: RestRequest<unknown>) => path.replace('{id}', encodeURIComponent(req.params.id ?? ''));
  const get = (ctx: LookupContext<StripeClient>, req: RestRequest<FlatForm>) =>
    send(ctx, 'GET', at(req), req);
  return defineEndpoint<FlatForm, ForwardedResponse | undefined, StripeClient>({
    vendor: 'stripe',
    method: 'GET',
    path,
    description: `Retrieve a ${what}.`,
    body: noBody.transform((b) => b as FlatForm),
    queryParams,
    rules: withCustomers ? ['customers'] : [],
    // Only a customers rule needs the object before deciding; otherwise the call reads it.
    lookup: async (ctx, req) => {
      if (!idPattern.test(req.params.id ?? '')) return undefined;
      return ctx.rule.customers ? get(ctx, req) : undefined;
    },
    facts(req, looked) {
      if (!looked) return {};
      const body = looked.status < 300 ? jsonObject(looked.body) : undefined;
      return { customer: body ? idOf(customerOf(body, req.params.id ?? '')) : null };
    },
    async call(ctx, req, looked) {
      const res = looked ?? (await get(ctx, req));
      return forwardedEffect(res, { read: true, requestIdHeader: REQUEST_ID });
    },
  });
}

const readIntent = read('/v1/payment_intents/{id}', 'PaymentIntent', /^pi_\w+$/, (b) => b.customer, true, [
  'client_secret',
  'expand[*]',
]);
const readCharge = read('/v1/charges/{id}', 'Charge', /^(ch|py)_\w+$/, (b) => b.customer);
const readCustomer = read('/v1/customers/{id}', 'Customer', /^cus_\w+$/, (_b, id) => id);
const readRefund = read('/v1/refunds/{id}', 'Refund', /^re_\w+$/, () => null, false);

/** Stripe's REST front door: `/v1/…` at the root, as every Stripe SDK calls it. */
export const stripeApi: VendorApi = {
  vendor: 'stripe',
  prefixes: ['/v1/'],
  endpoints: [createRefund, createIntent, readIntent, readCharge, readCustomer, readRefund],
  presentedKey: stripePresentedKey,
  forwardHeaders: ['stripe-version'],
  body: 'form',
  refusal: stripeRefusal,
};
