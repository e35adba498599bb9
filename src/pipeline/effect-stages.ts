import { approvalView } from '../approvals/view.js';
import { budgetView } from '../ledger/budget.js';
import { vendorIdempotencyKey, type CallState, type ToolCallResult } from './call-state.js';
import type { PipelineDeps } from './deps.js';
import { scrubId, scrubVendorError, VendorError } from './errors.js';
import { errorName } from '../config/logger.js';
import { failure, vendorInfo } from './failure.js';
import type { Effect } from './tool.js';

/** The vendor call, with the server-held credential and an idempotency key derived from the audit row. */
export async function call(s: CallState, deps: PipelineDeps): Promise<void> {
  const key = s.key!;
  const ctx = {
    ...s.vendor!.callCtx(
      s.req.idempotencyKey ? vendorIdempotencyKey(key.id, s.req.idempotencyKey) : `leash_${s.id}`,
      () => budgetView(deps.db, key, key.policy, deps.clock.now()),
    ),
    approval: (id: string, waitSeconds?: number) =>
      approvalView(
        deps.db,
        key.id,
        id,
        waitSeconds ? { waits: deps.approvalWaits, seconds: waitSeconds, signal: s.req.signal } : undefined,
      ),
  };
  const t0 = performance.now();
  try {
    const effect = await s.tool!.call(ctx, s.input, s.looked);
    // An answer leash cannot act on (a 5xx to a write, an unreadable 2xx) is not an effect: its outcome is unknown.
    if (effect.outcome === 'unknown') s.vendorError = unknownAnswer(s, effect);
    else s.effect = effect;
  } catch (error) {
    if (error instanceof VendorError) s.vendorError = scrubVendorError(error, s.handle?.secrets);
    else {
      deps.log.error('tool call failed', { audit_id: s.id, tool: s.name, error: errorName(error) });
      s.internalError = true;
    }
  }
  s.vendorMs = performance.now() - t0;
}

/** A vendor answer that passes through no further (REST): the vendor's status, told as an unknown outcome. */
function unknownAnswer(s: CallState, e: Effect<unknown>): VendorError {
  const status = e.httpStatus;
  const answered = `${s.tool?.vendor ?? 'the vendor'} answered HTTP ${status ?? '(none)'}`;
  return new VendorError({
    vendor: s.tool?.vendor ?? 'vendor',
    kind: e.unreadable ? 'unreadable' : 'unavailable',
    status,
    requestId: scrubId(e.vendorRequestId, s.handle?.secrets),
    message: e.unreadable ? `${answered} with a body leash cannot read` : answered,
    definite: false,
  });
}

/**
 * Hands the outcome to the settle queue. A known outcome is answered without waiting for its commit; an unknown
 * one is committed first, so an identical call the caller makes after hearing the answer finds the row `unknown`
 * (and is refused as outcome_pending) instead of racing its settle.
 */
export async function settle(s: CallState, deps: PipelineDeps): Promise<void> {
  const latency_ms = Math.round(s.vendorMs ?? 0);
  if (s.effect?.outcome) {
    // A vendor error passed through to the caller (REST): nothing is spent.
    const e = s.effect;
    deps.settler.enqueue({
      id: s.id,
      outcome: s.effect.outcome,
      cost: 0,
      cost_status: 'settled',
      patch: {
        error: `vendor answered HTTP ${e.httpStatus ?? 'error'}`,
        http_status: e.httpStatus,
        vendor_request_id: scrubId(e.vendorRequestId, s.handle?.secrets),
        latency_ms,
      },
    });
  } else if (s.effect) {
    const e = s.effect;
    deps.settler.enqueue({
      id: s.id,
      outcome: 'succeeded',
      cost: e.costMicros,
      cost_status: e.costStatus,
      ...(e.replayed ? { replayed: true } : {}),
      patch: {
        vendor_object_id: e.vendorObjectId,
        vendor_request_id: scrubId(e.vendorRequestId, s.handle?.secrets),
        http_status: e.httpStatus,
        amount: e.amount?.minor,
        currency: e.amount?.currency.toLowerCase(),
        latency_ms,
      },
    });
  } else if (s.vendorError) {
    const e = s.vendorError;
    deps.settler.enqueue({
      id: s.id,
      outcome: e.definite ? 'failed' : 'unknown',
      cost: 0,
      cost_status: 'settled',
      patch: {
        error: `${e.kind}: ${e.message}`,
        http_status: e.status,
        vendor_request_id: e.requestId,
        latency_ms,
      },
    });
  } else {
    deps.settler.enqueue({
      id: s.id,
      outcome: 'unknown',
      cost: 0,
      cost_status: 'settled',
      patch: { error: 'internal error', latency_ms },
    });
  }
  if (!s.effect && !s.vendorError?.definite) await deps.settler.flush();
}

/** What an agent is told to do when a call's outcome is unknown (on both doors, with the leash code and audit id). */
export const UNKNOWN_ADVICE =
  'the outcome is unknown: the vendor may have acted; do not repeat this call (an identical call is refused as ' +
  'outcome_pending until then); leash reconcile settles it';

/** A small structured result: ids, amounts, budget left — never a raw vendor payload, never a secret. */
export function answer(s: CallState, deps: PipelineDeps): ToolCallResult {
  const admission = s.admission!;
  if (s.effect) {
    const remaining =
      admission.remaining_micros === null
        ? null
        : admission.remaining_micros + (s.cost - s.effect.costMicros);
    return {
      ok: true,
      output: s.effect.output as Record<string, unknown>,
      audit_id: s.id,
      sandbox: deps.sandbox,
      remaining_micros: remaining,
    };
  }
  const e = s.vendorError;
  if (!e)
    return failure('internal_error', s.id, `internal error; audit id ${s.id}; ${UNKNOWN_ADVICE}`, {
      outcome: 'unknown',
    });
  const wait = e.retryAfterSeconds;
  const what = !e.definite
    ? UNKNOWN_ADVICE
    : e.retryable && wait !== undefined
      ? `nothing was done; call again in ${wait}s`
      : 'nothing was done';
  const details: Record<string, unknown> = !e.definite
    ? { outcome: 'unknown' }
    : wait !== undefined
      ? { retry_after_seconds: wait }
      : {};
  return failure(
    `vendor_${e.kind}`,
    s.id,
    `${s.tool?.vendor ?? 'vendor'} ${e.kind === 'rejected' ? 'rejected the call' : `error (${e.kind})`}: ${e.message}; ${what}`,
    details,
    { retryable: e.definite && e.retryable, vendor: vendorInfo(e) },
  );
}
