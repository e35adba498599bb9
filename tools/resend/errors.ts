import type { ErrorResponse } from 'resend';
import { scrub, VendorError } from '../../src/pipeline/errors.js';

const AUTH = new Set(['missing_api_key', 'invalid_api_key', 'restricted_api_key', 'invalid_access']);
const RATE = new Set(['rate_limit_exceeded', 'daily_quota_exceeded', 'monthly_quota_exceeded']);
// 409s about the idempotency key mean an earlier request with this key exists: nothing here is definite.
const IDEMPOTENCY = new Set(['concurrent_idempotent_requests', 'invalid_idempotent_request']);

export interface Failure {
  /** The `{ error }` Resend returned, if it returned one. */
  error?: ErrorResponse | undefined;
  /** Our own timeout fired before Resend answered. */
  timedOut?: boolean;
  timeoutMs?: number;
  /** Raw secret values to scrub from anything Resend echoes back. */
  secrets: readonly string[];
  cause?: unknown;
}

/** Maps Resend's returned `{ error }` (it never throws) or a thrown failure to one VendorError, with no secrets. */
export function resendError(f: Failure): VendorError {
  const base = { vendor: 'resend', cause: f.cause };
  if (f.timedOut) {
    const within = f.timeoutMs === undefined ? '' : ` within ${f.timeoutMs} ms`;
    return new VendorError({
      ...base,
      kind: 'timeout',
      message: `Resend did not answer${within}`,
      definite: false,
    });
  }
  const status = f.error?.statusCode ?? undefined;
  const name = f.error?.name ?? '';
  // The SDK swallows network errors into statusCode null, so a refused connection cannot be told apart from a lost answer.
  if (status === undefined || status >= 500) {
    return new VendorError({
      ...base,
      kind: 'unavailable',
      status,
      message: status === undefined ? 'Resend could not be reached' : `Resend failed with HTTP ${status}`,
      definite: false,
    });
  }
  const code = /^[a-z_]{1,64}$/.test(name) ? name : undefined;
  const message = `${code ?? 'error'}: ${scrub(f.error?.message ?? '', f.secrets).slice(0, 200)}`;
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
  });
}
