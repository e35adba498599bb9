import type { ToolCallResult } from './call-state.js';
import type { ToolFailure, VendorError } from './errors.js';
import { refusalKind } from './refusals.js';

/** A refusal as the caller sees it: the table says whether a retry helps; `extra` may say otherwise for this case. */
export function failure(
  code: string,
  audit_id: string | null,
  message?: string,
  details?: Record<string, unknown>,
  extra: Partial<ToolFailure> = {},
): ToolCallResult {
  const kind = refusalKind(code);
  const f: ToolFailure = {
    code,
    message: message ?? kind.message(details ?? {}),
    retryable: kind.retryable,
    audit_id,
    ...extra,
  };
  if (details && Object.keys(details).length) f.details = details;
  return { ok: false, failure: f };
}

export function vendorInfo(e: VendorError): NonNullable<ToolFailure['vendor']> {
  const v: NonNullable<ToolFailure['vendor']> = { name: e.vendor, kind: e.kind };
  if (e.status !== undefined) v.status = e.status;
  if (e.requestId) v.request_id = e.requestId;
  if (e.vendorCode) v.code = e.vendorCode;
  if (e.retryAfterSeconds !== undefined) v.retry_after_seconds = e.retryAfterSeconds;
  return v;
}
