import type { IncomingHttpHeaders } from 'node:http';
import type { VendorRefusal } from '../../src/vendor-kit/rest-api.js';

/** Resend response headers an SDK reads; every other header (cookies, auth challenges) is dropped. */
export const RESEND_RESPONSE_HEADERS = [
  'content-type',
  'x-request-id',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'retry-after',
] as const;

/** resend-node and curl send `Bearer re_…`; here the bearer token is the vault key. */
export function resendPresentedKey(headers: IncomingHttpHeaders): string | undefined {
  return /^Bearer\s+(\S+)$/i.exec(headers.authorization ?? '')?.[1];
}

/** Resend's error names for leash's statuses, so code that switches on `error.name` sees familiar ones. */
const NAMES: Readonly<Record<number, string>> = {
  400: 'validation_error',
  401: 'invalid_api_key',
  402: 'daily_quota_exceeded',
  403: 'validation_error',
  // outcome_pending: Resend's own name for "a request with this key is still being processed".
  409: 'concurrent_idempotent_requests',
  429: 'rate_limit_exceeded',
};

/** Resend's error shape: resend-node returns it as `{ error: { statusCode, name, message } }`. */
export function resendRefusal(r: VendorRefusal): { body: unknown } {
  return { body: { statusCode: r.status, name: NAMES[r.status] ?? 'application_error', message: r.message } };
}
