import {
  FIRST_PASS_TEXT,
  retryAfterSeconds,
  scrub,
  VendorError,
  type VendorErrorKind,
} from '../../src/pipeline/errors.js';
import type { ErrorMapper } from '../../src/vendor-kit/client-guard.js';

/** What leash's HTTP client hands the SDK, and what an error answer keeps. */
export interface TwilioHttpResponse {
  statusCode: number;
  body: string;
  headers: Record<string, string>;
}

/**
 * A Twilio error answer, parsed as the SDK's RestException does (status, code, message, more_info), plus
 * the `twilio-request-id` header. Defined here so this module does not load the SDK at startup.
 */
export class TwilioResponseError extends Error {
  override name = 'TwilioResponseError';
  readonly status: number;
  readonly code: number | undefined;
  readonly moreInfo: string | undefined;
  readonly requestId: string | undefined;
  readonly retryAfterSeconds: number | undefined;
  constructor(response: TwilioHttpResponse) {
    let body: { message?: unknown; code?: unknown; more_info?: unknown } = {};
    try {
      body = JSON.parse(response.body) as typeof body;
    } catch {
      // Not JSON: keep the status alone.
    }
    super(typeof body.message === 'string' ? body.message : `HTTP ${response.statusCode}`);
    this.status = response.statusCode;
    this.code = typeof body.code === 'number' ? body.code : undefined;
    this.moreInfo = typeof body.more_info === 'string' ? body.more_info : undefined;
    this.requestId = response.headers['twilio-request-id'];
    this.retryAfterSeconds = retryAfterSeconds(response.headers['retry-after']);
  }
}

/** A 2xx whose body is not a JSON object: Twilio answered, so it may have acted, but leash cannot read what it did. */
export class TwilioUnreadableError extends Error {
  override name = 'TwilioUnreadableError';
  readonly requestId: string | undefined;
  constructor(
    readonly status: number,
    headers: Record<string, string>,
  ) {
    super(`Twilio answered HTTP ${status} with a body leash cannot read`);
    this.requestId = headers['twilio-request-id'];
  }
}

// Connection errors that mean the request never left: the vendor certainly did nothing.
const NEVER_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND']);

function causeCode(error: Error): string | undefined {
  const cause: unknown = error.cause;
  if (cause && typeof cause === 'object' && 'code' in cause && typeof cause.code === 'string')
    return cause.code;
  return undefined;
}

function kindFor(status: number): VendorErrorKind {
  if (status === 401 || status === 403) return 'auth';
  if (status === 429) return 'rate_limited';
  if (status >= 500) return 'unavailable';
  return 'rejected';
}

/**
 * Maps whatever a Twilio SDK call threw to one VendorError, its message, request id and code scrubbed of every
 * form of the credential (Twilio's basic auth is base64 of `sid:token`, which a vendor may echo back).
 */
export const twilioError: ErrorMapper = (error, ctx) => {
  if (error instanceof VendorError) return error;
  const secrets = ctx.secrets;
  const vendor = ctx.vendor;
  if (error instanceof TwilioUnreadableError)
    return new VendorError({
      vendor,
      kind: 'unreadable',
      status: error.status,
      requestId: error.requestId === undefined ? undefined : scrub(error.requestId, secrets, FIRST_PASS_TEXT),
      message: error.message,
    });
  // RestException, or the SDK's RFC 9457 TwilioServiceException: both carry an HTTP status and a Twilio code.
  if (error instanceof Error && 'status' in error && typeof error.status === 'number') {
    const status = error.status;
    const code = 'code' in error && typeof error.code === 'number' ? String(error.code) : undefined;
    const text = error.message || `HTTP ${status}`;
    return new VendorError({
      vendor,
      kind: kindFor(status),
      status,
      requestId:
        error instanceof TwilioResponseError && error.requestId !== undefined
          ? scrub(error.requestId, secrets, FIRST_PASS_TEXT)
          : undefined,
      vendorCode: code === undefined ? undefined : scrub(code, secrets, FIRST_PASS_TEXT),
      // No `cause`: the raw vendor message may echo credentials back (only the scrubbed text is kept).
      message: scrub(text, secrets, 200),
      retryAfterSeconds: error instanceof TwilioResponseError ? error.retryAfterSeconds : undefined,
    });
  }
  if (
    ctx.timedOut ||
    (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError'))
  ) {
    return new VendorError({
      vendor,
      kind: 'timeout',
      message: 'Twilio did not answer in time',
      definite: false,
    });
  }
  const code = error instanceof Error ? causeCode(error) : undefined;
  return new VendorError({
    vendor,
    kind: 'unavailable',
    message: code ? `could not reach Twilio (${code})` : 'request failed before Twilio answered',
    definite: code !== undefined && NEVER_SENT.has(code),
  });
};
