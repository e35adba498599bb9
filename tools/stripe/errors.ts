import {
  FIRST_PASS_TEXT,
  retryAfterSeconds,
  scrub,
  VendorError,
  type VendorErrorKind,
} from '../../src/pipeline/errors.js';
import type { ErrorMapper } from '../../src/vendor-kit/client-guard.js';

/** The fields every Stripe SDK error carries (`type` is its class name, e.g. StripeRateLimitError). */
interface StripeSdkError {
  type: string;
  message: string;
  statusCode?: number;
  requestId?: string;
  code?: string;
  detail?: unknown;
  headers?: Record<string, unknown>;
}

// Matched by shape, not instanceof, so this module does not load the SDK at startup.
function isStripeError(e: unknown): e is StripeSdkError {
  return e instanceof Error && 'type' in e && typeof e.type === 'string' && e.type.startsWith('Stripe');
}

/**
 * Maps what the Stripe SDK throws to one VendorError. Message, request id and code are scrubbed (and cut only
 * loosely: the pipeline scrubs again with every form of the live secrets, then cuts to size).
 */
export const stripeError: ErrorMapper = (error, ctx) => {
  if (error instanceof VendorError) return error;
  const { secrets, vendor } = ctx;
  const clean = (text: string | undefined) =>
    text === undefined ? undefined : scrub(text, secrets, FIRST_PASS_TEXT);
  if (isStripeError(error)) {
    const status = error.statusCode;
    let kind: VendorErrorKind = 'rejected';
    let definite: boolean | undefined;
    if (error.type === 'StripeConnectionError' && ctx.timedOut) {
      kind = 'timeout';
      definite = false;
    } else if (error.type === 'StripeConnectionError') {
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
    } else if (status === undefined) {
      // An answer the SDK could not parse ("Invalid JSON received from the Stripe API"): Stripe may have acted.
      kind = 'unreadable';
    }
    return new VendorError({
      vendor,
      kind,
      status,
      requestId: clean(error.requestId),
      vendorCode: clean(error.code),
      message: scrub(error.message || error.type, secrets, FIRST_PASS_TEXT),
      retryAfterSeconds: retryAfterSeconds(error.headers?.['retry-after']),
      ...(definite !== undefined ? { definite } : {}),
    });
  }
  if (ctx.timedOut) {
    return new VendorError({
      vendor,
      kind: 'timeout',
      message: 'Stripe did not answer in time',
      definite: false,
    });
  }
  return new VendorError({
    vendor,
    kind: 'unavailable',
    message: 'request failed before Stripe answered',
    definite: false,
  });
};
