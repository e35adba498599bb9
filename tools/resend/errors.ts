import type { ErrorResponse } from 'resend';
import { retryAfterSeconds, scrub, VendorError } from '../../src/pipeline/errors.js';
import type { ErrorMapper } from '../../src/vendor-kit/client-guard.js';

const AUTH = new Set(['missing_api_key', 'invalid_api_key', 'restricted_api_key', 'invalid_access']);
const RATE = new Set(['rate_limit_exceeded', 'daily_quota_exceeded', 'monthly_quota_exceeded']);
// 409s about the idempotency key mean an earlier request with this key exists: nothing here is definite.
const IDEMPOTENCY = new Set(['concurrent_idempotent_requests', 'invalid_idempotent_request']);

/** The `{ error }` the Resend SDK returned (it never throws), thrown by the client so the guard maps it. */
export class ResendReturnedError extends Error {
  override name = 'ResendReturnedError';
  constructor(
    readonly error: ErrorResponse,
    /** The answer's headers (null when none arrived). */
    readonly headers: Record<string, string> | null = null,
  ) {
    super('Resend returned an error');
  }
}

/** Maps Resend's returned `{ error }` or a thrown failure to one VendorError, with no secrets. */
export const resendError: ErrorMapper = (thrown, ctx) => {
  if (thrown instanceof VendorError) return thrown;
  const base = { vendor: ctx.vendor };
  const returned = thrown instanceof ResendReturnedError ? thrown.error : undefined;
  // An HTTP answer beats our timer; the SDK turns network errors (an abort too) into statusCode null.
  if (ctx.timedOut && !returned?.statusCode) {
    return new VendorError({
      ...base,
      kind: 'timeout',
      message: `Resend did not answer within ${ctx.timeoutMs} ms`,
      definite: false,
    });
  }
  const status = returned?.statusCode ?? undefined;
  const name = returned?.name ?? '';
  // A refused connection cannot be told apart from a lost answer, nor (the SDK says the same) from an answer whose
  // body was not JSON.
  if (status === undefined || status >= 500) {
    return new VendorError({
      ...base,
      kind: 'unavailable',
      status,
      message:
        status === undefined
          ? 'Resend could not be reached, or its answer could not be read'
          : `Resend failed with HTTP ${status}`,
      definite: false,
    });
  }
  const code = /^[a-z_]{1,64}$/.test(name) && scrub(name) === name ? name : undefined;
  // Scrubbed with every form of the key before it is cut, so no half of an encoded key survives the cut.
  const message = `${code ?? 'error'}: ${scrub(returned?.message ?? '', ctx.secrets, 200)}`;
  const kind =
    status === 401 || status === 403 || AUTH.has(name)
      ? 'auth'
      : status === 429 || RATE.has(name)
        ? 'rate_limited'
        : 'rejected';
  return new VendorError({
    ...base,
    kind,
    status,
    message,
    vendorCode: code,
    definite: !IDEMPOTENCY.has(name),
    retryAfterSeconds: retryAfterSeconds(
      thrown instanceof ResendReturnedError ? thrown.headers?.['retry-after'] : undefined,
    ),
  });
};
