/** An expected refusal: policy, budget or key state said no. Retrying the same call will not help. */
export class PolicyDenied extends Error {
  override name = 'PolicyDenied';
  readonly retryable = false;
  constructor(
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** `unreadable`: the vendor answered (even 2xx) with a body leash cannot read or that lacks what leash needs. */
export type VendorErrorKind = 'rejected' | 'auth' | 'rate_limited' | 'unavailable' | 'timeout' | 'unreadable';

/**
 * The vendor refused or could not be reached. `definite` says whether the vendor certainly did nothing
 * (a 4xx, or a connection never made); otherwise the outcome is unknown until reconciled.
 */
export class VendorError extends Error {
  override name = 'VendorError';
  readonly vendor: string;
  readonly kind: VendorErrorKind;
  readonly status: number | undefined;
  readonly requestId: string | undefined;
  readonly retryable: boolean;
  readonly definite: boolean;
  /** A vendor error code (e.g. Stripe `charge_already_refunded`), safe to show. */
  readonly vendorCode: string | undefined;
  /** When the vendor said to call again (its 429's `Retry-After`), in whole seconds. */
  readonly retryAfterSeconds: number | undefined;
  constructor(o: {
    vendor: string;
    kind: VendorErrorKind;
    message: string;
    status?: number | undefined;
    requestId?: string | undefined;
    vendorCode?: string | undefined;
    definite?: boolean;
    retryAfterSeconds?: number | undefined;
    cause?: unknown;
  }) {
    super(o.message, { cause: o.cause });
    this.vendor = o.vendor;
    this.kind = o.kind;
    this.status = o.status;
    this.requestId = o.requestId;
    this.vendorCode = o.vendorCode;
    this.retryAfterSeconds = o.retryAfterSeconds;
    this.retryable = o.kind === 'rate_limited' || o.kind === 'unavailable' || o.kind === 'timeout';
    // An unreadable answer is an answer: the vendor may well have acted.
    this.definite =
      o.kind === 'unreadable'
        ? false
        : (o.definite ?? (o.status !== undefined && o.status >= 400 && o.status < 500));
  }
}

/** The longest wait leash passes on (a day): a larger or unreadable Retry-After is dropped. */
const MAX_RETRY_AFTER = 86_400;

/**
 * A `Retry-After` header (delay-seconds or an HTTP date) as whole seconds from now, or undefined when absent or
 * unreadable. A date in the past is 0.
 */
export function retryAfterSeconds(header: unknown, now = Date.now()): number | undefined {
  const values: unknown[] = Array.isArray(header) ? header : [header];
  const value = values[0];
  if (typeof value !== 'string' || !value.trim()) return undefined;
  const text = value.trim();
  const seconds = /^\d{1,9}$/.test(text)
    ? Number(text)
    : /[a-z]/i.test(text)
      ? Math.ceil((Date.parse(text) - now) / 1000)
      : NaN;
  if (!Number.isFinite(seconds)) return undefined;
  const s = Math.max(seconds, 0);
  return s <= MAX_RETRY_AFTER ? s : undefined;
}

/** What the agent sees when a call did not succeed. Never carries a secret or a stack. */
export interface ToolFailure {
  code: string;
  message: string;
  retryable: boolean;
  audit_id: string | null;
  details?: Record<string, unknown>;
  vendor?: {
    name: string;
    kind: VendorErrorKind;
    status?: number;
    request_id?: string;
    code?: string;
    retry_after_seconds?: number;
  };
}

/** Longest vendor text kept after scrubbing (a message); ids and codes keep less. */
export const MAX_VENDOR_TEXT = 500;
const MAX_VENDOR_ID = 200;
/** What a first pass without every secret form keeps, so a later pass with them never sees a secret cut in half. */
export const FIRST_PASS_TEXT = 8_000;

/**
 * Scrubs anything that looks like a credential from text that came from outside (vendor messages, request ids,
 * error codes): every given secret form (see `secretForms`; longest first), then known key shapes. Truncates last.
 */
export function scrub(text: string, secrets: readonly string[] = [], max = MAX_VENDOR_TEXT): string {
  let out = text;
  for (const s of secrets) if (s.length >= 6 && out.includes(s)) out = out.split(s).join('[redacted]');
  return out
    .replace(/\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]+/g, '[redacted]')
    .replace(/\bre_[A-Za-z0-9_]{8,}/g, '[redacted]')
    .replace(/\blsk_[a-z2-7]{12}_[a-z2-7]{52}\b/g, '[redacted]')
    .replace(/(Bearer|Basic)\s+[A-Za-z0-9+/=._-]+/gi, '$1 [redacted]')
    .replace(/\/\/[^/\s:@]+:[^/\s@]+@/g, '//[redacted]@')
    .slice(0, max);
}

/** `scrub` for an optional vendor id or code. */
export function scrubId(text: string | undefined, secrets: readonly string[] = []): string | undefined {
  return text === undefined ? undefined : scrub(text, secrets, MAX_VENDOR_ID);
}

/**
 * The same failure with every vendor-provided string (message, request id, code) scrubbed against `secrets`
 * and without `cause` (which may hold the raw vendor answer). Apply before anything reaches an agent, a log or a row.
 */
export function scrubVendorError(error: VendorError, secrets: readonly string[] = []): VendorError {
  return new VendorError({
    vendor: error.vendor,
    kind: error.kind,
    message: scrub(error.message, secrets),
    status: error.status,
    requestId: scrubId(error.requestId, secrets),
    vendorCode: scrubId(error.vendorCode, secrets),
    definite: error.definite,
    retryAfterSeconds: error.retryAfterSeconds,
  });
}
