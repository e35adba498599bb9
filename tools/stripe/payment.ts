import type Stripe from 'stripe';
import { z } from 'zod';
import type { AssumedLookup } from '../../src/pipeline/tool.js';
import { requestOptions, type StripeClient } from './client.js';

/** Stripe object ids are short; Stripe promises at most 255 characters, so nothing longer is sent or audited. */
export const MAX_STRIPE_ID = 255;

const stripeId = (pattern: RegExp, expected: string) =>
  z
    .string()
    // abort: a megabyte id stops here, before the pattern check runs over it.
    .max(MAX_STRIPE_ID, { abort: true, error: `expected ${expected}, at most ${MAX_STRIPE_ID} characters` })
    .regex(pattern, `expected ${expected}`);

/** The payment reference both Stripe tools take: exactly one of a PaymentIntent or a Charge. */
export const paymentRef = {
  payment_intent: stripeId(/^pi_[A-Za-z0-9_]+$/, 'a PaymentIntent id like "pi_…"').optional(),
  charge: stripeId(/^(ch|py)_[A-Za-z0-9_]+$/, 'a Charge id like "ch_…"').optional(),
};

export const exactlyOnePayment = (v: { payment_intent?: string | undefined; charge?: string | undefined }) =>
  Boolean(v.payment_intent) !== Boolean(v.charge);
export const exactlyOneMessage = {
  message: 'give exactly one of payment_intent or charge',
  path: ['payment_intent'],
};

/** What refunds and policy need to know of a payment, from a PaymentIntent or a Charge. */
export interface PaymentFacts {
  payment_intent: string | null;
  charge: string | null;
  customer: string | null;
  currency: string;
  amount: number;
  amount_refunded: number;
  refundable: number;
  status: string;
}

const id = (v: string | { id: string } | null | undefined) => (typeof v === 'string' ? v : (v?.id ?? null));

function fromCharge(c: Stripe.Charge, pi: string | null): PaymentFacts {
  const captured = c.captured ? c.amount_captured : 0;
  return {
    payment_intent: pi ?? id(c.payment_intent),
    charge: c.id,
    customer: id(c.customer),
    currency: c.currency,
    amount: c.amount,
    amount_refunded: c.amount_refunded,
    refundable: Math.max(captured - c.amount_refunded, 0),
    status: c.refunded ? 'refunded' : c.status,
  };
}

/** Reads a payment (read-only; any failure means the caller must deny). */
export async function lookupPayment(
  client: StripeClient,
  ref: { payment_intent?: string | undefined; charge?: string | undefined },
): Promise<PaymentFacts> {
  const options = requestOptions(client);
  if (ref.charge) {
    const id = ref.charge;
    return fromCharge(await client.run((stripe) => stripe.charges.retrieve(id, {}, options)), null);
  }
  const pi = await client.run((stripe) =>
    stripe.paymentIntents.retrieve(ref.payment_intent ?? '', { expand: ['latest_charge'] }, options),
  );
  const latest = pi.latest_charge;
  if (latest && typeof latest !== 'string')
    return { ...fromCharge(latest, pi.id), customer: id(pi.customer) ?? id(latest.customer) };
  return {
    payment_intent: pi.id,
    charge: null,
    customer: id(pi.customer),
    currency: pi.currency,
    amount: pi.amount,
    amount_refunded: 0,
    refundable: 0,
    status: pi.status,
  };
}

/** What a dry run may say of a payment (`leash policies test --call '{"facts": …}'`), in Stripe's own terms. */
const givenPayment = z
  .strictObject({
    customer: z.string().min(1).max(MAX_STRIPE_ID).nullable().optional(),
    amount: z
      .strictObject({
        minor: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
        currency: z.string().regex(/^[A-Za-z]{3}$/, 'expected a three-letter currency code, e.g. "usd"'),
      })
      .optional(),
    amount_refunded: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
  })
  .refine((g) => g.amount_refunded === undefined || g.amount_refunded <= (g.amount?.minor ?? Infinity), {
    message: "more than the payment's amount",
    path: ['amount_refunded'],
  });

/**
 * The payment a dry run describes: its `amount` (the payment's, with its currency; needed), its `customer` (none
 * when not given: the dry run finds a customers rule undecided before asking) and what is already refunded.
 */
export function assumePayment(
  given: Readonly<Record<string, unknown>>,
  ref: { payment_intent?: string | undefined; charge?: string | undefined },
): AssumedLookup<PaymentFacts> {
  const parsed = givenPayment.safeParse(given);
  if (!parsed.success)
    return {
      issues: parsed.error.issues.map((i) => ({
        field: ['facts', ...i.path.map(String)].join('.'),
        problem: i.message,
      })),
    };
  const { amount, customer = null, amount_refunded = 0 } = parsed.data;
  if (!amount) return { missing: ['amount'] };
  return {
    looked: {
      payment_intent: ref.payment_intent ?? null,
      charge: ref.charge ?? null,
      customer,
      currency: amount.currency.toLowerCase(),
      amount: amount.minor,
      amount_refunded,
      refundable: Math.max(amount.minor - amount_refunded, 0),
      status: 'succeeded',
    },
  };
}
