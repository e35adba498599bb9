// The REST front door's one way to reach a vendor: the agent's request, re-encoded from what policy checked,
// sent with the server-held credential. Built in a vendor's client.ts, where the credential is at hand.
import { secretForms } from '../credentials/credentials.js';
import { VendorError } from '../pipeline/errors.js';

/** What is forwarded: method, path (with the real account where the vendor puts one in it), body and headers. */
export interface ForwardRequest {
  method: string;
  path: string;
  query?: URLSearchParams;
  body?: string;
  /** Request headers besides the credential (content type, idempotency key, API version). */
  headers?: Record<string, string>;
  /** Text replaced in the answer before it is scrubbed (e.g. the real account id by the one the caller gave). */
  replace?: readonly (readonly [string, string])[];
}

/** The vendor's answer as it passes back: status, the allowed headers and the body, every secret form scrubbed. */
export interface ForwardedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export type Forwarder = (req: ForwardRequest) => Promise<ForwardedResponse>;

export interface ForwarderOptions {
  vendor: string;
  baseUrl: string;
  /** The credential as the vendor expects it (e.g. `authorization`). Never leaves this closure. */
  auth: Record<string, string>;
  /** Raw secret values, scrubbed from every answer in all their forms. */
  secrets: readonly string[];
  /** Response headers that pass back to the agent (lower-case); every other header is dropped. */
  keepHeaders: readonly string[];
  timeoutMs: number;
}

/** Replaces every form of every secret (longest first) in text that leaves the process. */
export function redactSecrets(text: string, forms: readonly string[]): string {
  let out = text;
  for (const s of forms) if (s.length >= 6 && out.includes(s)) out = out.split(s).join('[redacted]');
  return out;
}

/** A forwarder for one credential: a hard timeout, no redirects, allowlisted response headers, scrubbed answers. */
export function createForwarder(o: ForwarderOptions): Forwarder {
  const forms = secretForms(o.secrets); // longest first
  const base = o.baseUrl.replace(/\/+$/, '');
  const keep = new Set(o.keepHeaders);
  return async (req) => {
    const url = new URL(base + req.path);
    if (req.query) for (const [k, v] of req.query) url.searchParams.append(k, v);
    const signal = AbortSignal.timeout(o.timeoutMs);
    let res: Response;
    let body: string;
    try {
      res = await fetch(url, {
        method: req.method,
        headers: { ...req.headers, ...o.auth },
        ...(req.body !== undefined ? { body: req.body } : {}),
        redirect: 'manual',
        signal,
      });
      body = await res.text();
      for (const [from, to] of req.replace ?? []) if (from) body = body.split(from).join(to);
    } catch (error) {
      throw failed(o.vendor, error, signal.aborted, o.timeoutMs);
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of res.headers) if (keep.has(k)) headers[k] = redactSecrets(v, forms);
    return { status: res.status, headers, body: redactSecrets(body, forms) };
  };
}

function failed(vendor: string, error: unknown, timedOut: boolean, ms: number): VendorError {
  if (timedOut)
    return new VendorError({
      vendor,
      kind: 'timeout',
      message: `no answer within ${ms} ms`,
      definite: false,
    });
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : undefined;
  const code = (cause as { code?: unknown } | undefined)?.code;
  // A connection never made is a definite "nothing was done"; anything later may have reached the vendor.
  return new VendorError({
    vendor,
    kind: 'unavailable',
    message: `request failed before ${vendor} answered`,
    definite: code === 'ECONNREFUSED',
  });
}
