import { z } from 'zod';
import { defineTool } from '../../src/pipeline/tool.js';
import type { StripeClient } from './client.js';
import {
  assumePayment,
  exactlyOneMessage,
  exactlyOnePayment,
  lookupPayment,
  paymentRef,
  type PaymentFacts,
} from './payment.js';

const base = z.strictObject({
  ...paymentRef,
});
type In = z.infer<typeof base>;
const input = base.refine(exactlyOnePayment, exactlyOneMessage);

const output = z.object({
  payment_intent: z.string().nullable(),
  charge: z.string().nullable(),
  customer: z.string().nullable(),
  currency: z.string(),
  amount: z.number().int(),
  amount_refunded: z.number().int(),
  refundable: z.number().int(),
  status: z.string(),
});

/** Read a Stripe payment so an agent can refund correctly. Costs $0; counts as a request. */
export const getPayment = defineTool<In, PaymentFacts, z.infer<typeof output>, StripeClient>({
  name: 'get_payment',
  title: 'Look up a Stripe payment',
  description:
    'Read a Stripe PaymentIntent ("pi_…") or Charge ("ch_…"): amount, amount refunded, what is still refundable, customer and status. Amounts are in minor units (cents).',
  vendor: 'stripe',
  operation: 'GET /v1/payment_intents/{id}',
  annotations: {
    title: 'Look up a Stripe payment',
    readOnlyHint: true,
    destructiveHint: false,
    idempotentHint: true,
    openWorldHint: true,
  },
  input,
  output,
  rules: ['customers'],
  narrow: (rule) => ({
    input,
    limits: rule.customers ? [`Only payments of these customers: ${[...rule.customers].join(', ')}.`] : [],
  }),
  lookup: (ctx, i) => lookupPayment(ctx.client, i),
  // Its facts are the customer only: a dry run need not be told the payment's amount.
  assumeLookup: (given, i) => assumePayment({ amount: { minor: 0, currency: 'usd' }, ...given }, i),
  facts: (_i, p) => ({ customer: p.customer }),
  estimateCostMicros: () => 0,
  // The lookup already read the payment; returning it avoids a second identical vendor read.
  call: (_ctx, _i, p) =>
    Promise.resolve({
      output: { ...p },
      costMicros: 0,
      costStatus: 'settled',
      ...(p.payment_intent
        ? { vendorObjectId: p.payment_intent }
        : p.charge
          ? { vendorObjectId: p.charge }
          : {}),
    }),
});
