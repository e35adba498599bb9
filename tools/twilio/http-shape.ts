import type { IncomingHttpHeaders } from 'node:http';
import type { VendorRefusal } from '../../src/vendor-kit/rest-api.js';

/** Twilio response headers an SDK reads; every other header (cookies, auth challenges) is dropped. */
export const TWILIO_RESPONSE_HEADERS = [
  'content-type',
  'twilio-request-id',
  'twilio-concurrent-requests',
  'retry-after',
] as const;

/** twilio-node and curl send `Basic AC…:<auth token>`; here the password is the vault key (the user any AC… SID). */
export function twilioPresentedKey(headers: IncomingHttpHeaders): string | undefined {
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(headers.authorization ?? '')?.[1];
  if (!basic) return undefined;
  const decoded = Buffer.from(basic, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : decoded.slice(colon + 1) || undefined;
}

/** Leash's refusals as Twilio error numbers (20003 is Twilio's own "authenticate"), so RestException carries them. */
const CODES: Readonly<Record<number, number>> = {
  401: 20003,
  402: 20402,
  403: 20403,
  409: 20409,
  429: 20429,
};

/** Twilio's error shape: twilio-node raises RestException with this status, code and message. */
export function twilioRefusal(r: VendorRefusal): { body: unknown } {
  return {
    body: {
      code: CODES[r.status] ?? 20500,
      message: r.message,
      more_info: `leash:refusal/${r.code}`,
      status: r.status,
    },
  };
}
