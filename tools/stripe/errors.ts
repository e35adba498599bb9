import { scrub, VendorError, type VendorErrorKind } from '../../src/pipeline/errors.js';

/** The fields every Stripe SDK error carries (`type` is its class name, e.g. StripeRateLimitError). */
interface StripeSdkError {
  type: string;
  message: string;
  statusCode?: number;
  requestId?: string;
  code?: string;
  detail?: unknown;
}

// Matched by shape, not instanceof, so this module does not load the SDK at startup.
function isStripeError(e: unknown): e is StripeSdkError {
  return e instanceof Error && 'type' in e && typeof e.type === 'string' && e.type.startsWith('Stripe');
}

/** Maps what the Stripe SDK throws to one VendorError. Messages are scrubbed (the pipeline scrubs again with the live secrets). */
export function stripeError(error: unknown, secrets: readonly string[] = []): VendorError {
  if (error instanceof VendorError) return error;
  if (isStripeError(error)) {
    const status = error.statusCode;
    let kind: VendorErrorKind = 'rejected';
    let definite: boolean | undefined;
    if (error.type === 'StripeConnectionError') {
      kind = /timed? ?out|ETIMEDOUT|timeout/i.test(error.message) ? 'timeout' : 'unavailable';
      const detail =
        typeof error.detail === 'string'
          ? error.detail
          : error.detail instanceof Error
            ? error.detail.message
            : error.message;
      definite = /ECONNREFUSED/.test(detail);
    } else if (error.type === 'StripeAuthenticationError' || error.type === 'StripePermissionError') {
      kind = 'auth';
    } else if (error.type === 'StripeRateLimitError') {
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
