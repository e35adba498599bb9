import type { IncomingHttpHeaders } from 'node:http';
import type { VendorRefusal } from '../../src/vendor-kit/rest-api.js';

/** Stripe response headers an SDK reads; every other header (cookies, auth challenges) is dropped. */
export const STRIPE_RESPONSE_HEADERS = [
  'content-type',
  'request-id',
  'idempotency-key',
  'idempotent-replayed',
  'original-request',
  'stripe-version',
  'stripe-should-retry',
  'retry-after',
] as const;

/** stripe-node and curl send the key as `Bearer sk_…`; stripe-python and `curl -u sk_…:` as the Basic user. */
export function stripePresentedKey(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization ?? '';
  const bearer = /^Bearer\s+(\S+)$/i.exec(auth)?.[1];
  if (bearer) return bearer;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(auth)?.[1];
  if (!basic) return undefined;
  const decoded = Buffer.from(basic, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return (colon < 0 ? decoded : decoded.slice(0, colon)) || undefined;
}

/**
 * Stripe's error shape; `stripe-should-retry: false` keeps the SDK from retrying a refusal retrying cannot fix. An
 * unknown outcome says `true`: the SDK retries with the same idempotency key, which leash forwards and Stripe answers
 * with the first request's outcome (never a second refund); a new call with another key is refused outcome_pending.
 */
export function stripeRefusal(r: VendorRefusal): { body: unknown; headers: Record<string, string> } {
  const type =
    r.status === 429 ? 'rate_limit_error' : r.status >= 500 ? 'api_error' : 'invalid_request_error';
  return {
    body: { error: { type, code: r.code, message: r.message } },
    headers: { 'stripe-should-retry': r.status === 503 || r.outcomeUnknown ? 'true' : 'false' },
  };
}
