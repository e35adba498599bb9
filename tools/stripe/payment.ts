import type Stripe from 'stripe';
import { z } from 'zod';
import { requestOptions, type StripeClient } from './client.js';
import { stripeError } from './errors.js';

/** The payment reference both Stripe tools take: exactly one of a PaymentIntent or a Charge. */
export const paymentRef = {
  payment_intent: z
    .string()
    .regex(/^pi_[A-Za-z0-9_]+$/, 'expected a PaymentIntent id like "pi_…"')
    .optional(),
  charge: z
    .string()
    .regex(/^(ch|py)_[A-Za-z0-9_]+$/, 'expected a Charge id like "ch_…"')
    .optional(),
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
  try {
    if (ref.charge)
      return fromCharge(await client.stripe.charges.retrieve(ref.charge, {}, requestOptions(client)), null);
    const pi = await client.stripe.paymentIntents.retrieve(
      ref.payment_intent ?? '',
      { expand: ['latest_charge'] },
      requestOptions(client),
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
  } catch (error) {
    throw stripeError(error);
  }
}
