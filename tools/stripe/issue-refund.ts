import type Stripe from 'stripe';
import { z } from 'zod';
import { formatUsd, toMicroUsd } from '../../src/policy/money.js';
import { VendorError } from '../../src/pipeline/errors.js';
import { defineTool, type Effect } from '../../src/pipeline/tool.js';
import { requestOptions, type StripeClient } from './client.js';
import {
  assumePayment,
  exactlyOneMessage,
  exactlyOnePayment,
  lookupPayment,
  paymentRef,
  type PaymentFacts,
} from './payment.js';

/** Stripe amounts have at most eight digits (99999999 cents is $999,999.99). */
const MAX_STRIPE_AMOUNT = 99_999_999;

const amountField = z
  .number()
  .int()
  .positive()
  .max(MAX_STRIPE_AMOUNT, `expected at most ${MAX_STRIPE_AMOUNT} (Stripe amounts have at most eight digits)`)
  .describe('Amount to refund in the currency minor unit (cents). Default: all that is still refundable.');

const base = z.strictObject({
  ...paymentRef,
  amount: amountField.optional(),
  reason: z.enum(['duplicate', 'fraudulent', 'requested_by_customer']).optional(),
});
type In = z.infer<typeof base>;

const exactlyOne = exactlyOnePayment;
const oneMessage = exactlyOneMessage;

const output = z.object({
  refund_id: z.string(),
  status: z.string(),
  amount: z.number().int(),
  currency: z.string(),
  payment_intent: z.string().nullable(),
  charge: z.string().nullable(),
  customer: z.string().nullable(),
  refundable_after: z.number().int(),
});
type Out = z.infer<typeof output>;

const refundAmount = (i: In, p: PaymentFacts) => i.amount ?? p.refundable;

async function createRefund(
  client: StripeClient,
  i: In,
  amount: number,
  idempotencyKey: string,
): Promise<Stripe.Response<Stripe.Refund>> {
  const params: Stripe.RefundCreateParams = { amount };
  if (i.charge) params.charge = i.charge;
  else if (i.payment_intent) params.payment_intent = i.payment_intent;
  if (i.reason) params.reason = i.reason;
  return client.run((stripe) => stripe.refunds.create(params, requestOptions(client, idempotencyKey)));
}

function effectOf(
  refund: Stripe.Response<Stripe.Refund>,
  p: PaymentFacts,
  rates: Readonly<Record<string, number>>,
): Effect<Out> {
  // Stripe answered, but without the refund's id and amount leash cannot settle it (or count its money).
  if (
    typeof refund.id !== 'string' ||
    typeof refund.amount !== 'number' ||
    typeof refund.currency !== 'string'
  )
    throw new VendorError({
      vendor: 'stripe',
      kind: 'unreadable',
      status: refund.lastResponse?.statusCode,
      requestId: refund.lastResponse?.requestId,
      message: 'Stripe answered without the refund leash asked for',
    });
  return {
    output: {
      refund_id: refund.id,
      status: refund.status ?? 'pending',
      amount: refund.amount,
      currency: refund.currency,
      payment_intent: p.payment_intent,
      charge: p.charge,
      customer: p.customer,
      refundable_after: Math.max(p.refundable - refund.amount, 0),
    },
    // evaluate() already refused currencies without a rate, so the conversion is defined here.
    costMicros: toMicroUsd(refund.amount, refund.currency, rates) ?? 0,
    costStatus: 'settled',
    vendorObjectId: refund.id,
    ...(refund.lastResponse?.requestId ? { vendorRequestId: refund.lastResponse.requestId } : {}),
    // stripe-node retries a closed connection once with the same key: Stripe then answers with the first refund.
    ...(refund.lastResponse?.headers?.['idempotent-replayed'] === 'true' ? { replayed: true } : {}),
    amount: { minor: refund.amount, currency: refund.currency },
  };
}

/** Stripe refund by PaymentIntent or Charge; the payment's customer, currency and refundable amount are looked up first. */
export const issueRefund = defineTool<In, PaymentFacts, Out, StripeClient>({
  name: 'issue_refund',
  title: 'Issue a Stripe refund',
  description:
    'Refund a Stripe payment (PaymentIntent "pi_…" or Charge "ch_…"), fully or partly. Amount is in minor units (cents); omit it (or send null) to refund all that is still refundable. Use get_payment first to see what is refundable.',
  vendor: 'stripe',
  operation: 'POST /v1/refunds',
  dedupesByKey: true,
  annotations: {
    title: 'Issue a Stripe refund',
    readOnlyHint: false,
    destructiveHint: true,
    idempotentHint: false,
    openWorldHint: true,
  },
  input: base.refine(exactlyOne, oneMessage),
  output,
  rules: ['max_amount_usd', 'customers'],
  narrow(rule) {
    const limits: string[] = [];
    let shape = base;
    if (rule.maxAmountMicros !== undefined) {
      limits.push(`Each refund may be at most ${formatUsd(rule.maxAmountMicros)} (USD equivalent).`);
      const maxCents = Math.floor(rule.maxAmountMicros / 10_000);
      shape = shape.extend({
        amount: amountField
          .max(maxCents, `at most ${maxCents} (${formatUsd(rule.maxAmountMicros)}) per refund`)
          .optional(),
      });
    }
    if (rule.customers) limits.push(`Only payments of these customers: ${[...rule.customers].join(', ')}.`);
    return { input: shape.refine(exactlyOne, oneMessage), limits };
  },
  lookup: (ctx, i) => lookupPayment(ctx.client, i),
  assumeLookup: (given, i) => assumePayment(given, i),
  facts: (i, p) => ({ amount: { minor: refundAmount(i, p), currency: p.currency }, customer: p.customer }),
  estimateCostMicros: (_i, _p, _pricing, usd) => usd ?? 0,
  async call(ctx, i, p) {
    const refund = await createRefund(ctx.client, i, refundAmount(i, p), ctx.idempotencyKey);
    return effectOf(refund, p, ctx.pricing.fxRates);
  },
  async reconcile(ctx, row) {
    // Replaying the same request (same amount) with the same idempotency key returns the original refund, never a second one.
    const req = base.safeParse(row.request ?? {});
    if (!req.success || row.amount === null) return { outcome: 'unknown' };
    try {
      const p = await lookupPayment(ctx.client, req.data);
      const refund = await createRefund(ctx.client, req.data, row.amount, ctx.idempotencyKey);
      if (refund.status === 'failed' || refund.status === 'canceled')
        return { outcome: 'failed', error: `refund ${refund.status}` };
      const e = effectOf(refund, p, ctx.pricing.fxRates);
      return {
        outcome: 'succeeded',
        costMicros: e.costMicros,
        costStatus: 'settled',
        vendorObjectId: refund.id,
        amount: { minor: refund.amount, currency: refund.currency },
      };
    } catch (error) {
      // 409 idempotency_key_in_use: another request with this key is in flight, which says nothing of this one.
      if (error instanceof VendorError && error.definite && error.status !== 409)
        return { outcome: 'failed', error: error.message };
      throw error;
    }
  },
});
