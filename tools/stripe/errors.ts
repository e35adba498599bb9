import Stripe from 'stripe';
import { scrub, VendorError, type VendorErrorKind } from '../../src/pipeline/errors.js';

/** Maps what the Stripe SDK throws to one VendorError. Messages are scrubbed (the pipeline scrubs again with the live secrets). */
export function stripeError(error: unknown, secrets: readonly string[] = []): VendorError {
  if (error instanceof Stripe.errors.StripeError) {
    const status = error.statusCode;
    let kind: VendorErrorKind = 'rejected';
    let definite: boolean | undefined;
    if (error instanceof Stripe.errors.StripeConnectionError) {
      const timedOut = /timed? ?out|ETIMEDOUT|timeout/i.test(error.message);
      kind = timedOut ? 'timeout' : 'unavailable';
      const detail =
        typeof error.detail === 'string'
          ? error.detail
          : error.detail instanceof Error
            ? error.detail.message
            : error.message;
      definite = /ECONNREFUSED/.test(detail);
    } else if (
      error instanceof Stripe.errors.StripeAuthenticationError ||
      error instanceof Stripe.errors.StripePermissionError
    ) {
      kind = 'auth';
    } else if (error instanceof Stripe.errors.StripeRateLimitError) {
      kind = 'rate_limited';
    } else if (status !== undefined && status >= 500) {
      kind = 'unavailable';
    }
    return new VendorError({
      vendor: 'stripe',
      kind,
      status,
      requestId: error.requestId,
      vendorCode: error.code,
      message: scrub(error.message || error.type, secrets),
      ...(definite !== undefined ? { definite } : {}),
    });
  }
  return new VendorError({
    vendor: 'stripe',
    kind: 'unavailable',
    message: 'request failed before Stripe answered',
    definite: false,
  });
}
