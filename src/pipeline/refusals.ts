import { formatUsd } from '../policy/money.js';

/** How a refusal is told: whether a retry can help, the HTTP status a REST front door answers, and a default message. */
export interface RefusalKind {
  retryable: boolean;
  http: number;
  /** Used when the stage that refused has no sentence of its own (refusals decided in SQL). */
  message(details: Record<string, unknown>): string;
}

const say = (text: string) => () => text;
const usd = (v: unknown) => (typeof v === 'number' ? formatUsd(v) : 'nothing');

/**
 * The one table of refusals. Every refusal — from evaluation, from SQL admission, from tools/list, from a
 * front door — is looked up here for `retryable` and its HTTP status; an unknown code is not retryable.
 */
export const REFUSALS: Readonly<Record<string, RefusalKind>> = {
  key_invalid: {
    retryable: false,
    http: 401,
    message: say('the vault key is missing, malformed or not recognised'),
  },
  key_revoked: {
    retryable: false,
    http: 401,
    message: say('this vault key has been revoked; stop and ask an operator'),
  },
  key_expired: {
    retryable: false,
    http: 401,
    message: say('this vault key has expired; stop and ask an operator for a new one'),
  },
  unknown_tool: { retryable: false, http: 404, message: say('there is no such tool') },
  tool_not_allowed: {
    retryable: false,
    http: 403,
    message: say("this key's policy does not allow this call"),
  },
  endpoint_not_allowed: {
    retryable: false,
    http: 403,
    message: say("this key's policy does not allow this endpoint"),
  },
  parameter_not_allowed: {
    retryable: false,
    http: 403,
    message: say('a parameter of this request is not allowed by policy'),
  },
  invalid_input: { retryable: true, http: 400, message: say('the arguments are not valid') },
  currency_not_supported: {
    retryable: false,
    http: 403,
    message: say('no USD rate is configured for this currency'),
  },
  amount_over_limit: { retryable: false, http: 403, message: say('the amount is over the per-call limit') },
  customer_not_allowed: {
    retryable: false,
    http: 403,
    message: say("the customer is not on this policy's list"),
  },
  recipient_not_allowed: {
    retryable: false,
    http: 403,
    message: say('a recipient is not allowed by policy'),
  },
  too_many_recipients: { retryable: false, http: 403, message: say('too many recipients for this policy') },
  too_many_segments: {
    retryable: false,
    http: 403,
    message: say('the message is longer than this policy allows'),
  },
  loop_detected: {
    retryable: false,
    http: 429,
    message: (d) =>
      `the same call was already made ${String(d.identical_calls)} times in the last ${String(d.window_seconds)}s; stop and ask a human`,
  },
  tripwire_tripped: {
    retryable: false,
    http: 429,
    message: (d) => {
      const spend = d.metric === 'spend_usd_per_10m';
      const figure = spend ? usd(d.figure) : String(d.figure);
      const limit = spend ? usd(d.limit) : String(d.limit);
      const scope = typeof d.scope_kind === 'string' ? d.scope_kind : 'key';
      const then =
        d.action === 'revoke'
          ? `this ${scope}'s keys are revoked`
          : `this ${scope} is paused until an operator resumes it`;
      return `tripwire '${String(d.wire)}' tripped: ${figure} ${String(d.metric)} is over its limit of ${limit} in ${String(d.window_seconds)}s, so this call was not made and ${then}; stop and ask a human`;
    },
  },
  key_paused: {
    retryable: false,
    http: 403,
    message: say(
      'this key, its run, its agent or its policy is paused (a tripwire tripped, or an operator paused it); stop and ask an operator to resume it',
    ),
  },
  outcome_pending: {
    retryable: false,
    http: 409,
    message: (d) =>
      `an identical call by this key (audit id ${String(d.audit_id)}) has an unknown outcome: the vendor may have acted, ` +
      'so this call was not sent; do not repeat it: leash reconcile settles the first call, then check its outcome',
  },
  budget_exceeded: {
    retryable: false,
    http: 402,
    message: (d) => {
      const scope = typeof d.scope === 'string' && d.scope.startsWith('policy:') ? 'policy' : 'key';
      return `daily USD cap reached for this ${scope}: ${usd(d.remaining_micros)} left today, this call needs ${usd(d.requested_micros)}; retrying will not help until ${String(d.resets_at)}`;
    },
  },
  request_limit_exceeded: {
    retryable: false,
    http: 429,
    message: (d) =>
      `hourly request cap of ${String(d.cap_requests)} reached; retrying will not help until ${String(d.resets_at)}`,
  },
  facts_unavailable: {
    retryable: false,
    http: 502,
    message: say('could not look up what this call touches'),
  },
  credential_unavailable: {
    retryable: false,
    http: 503,
    message: say('leash has no usable vendor credential for this policy; ask an operator'),
  },
  audit_unavailable: {
    retryable: true,
    http: 503,
    message: say('the audit log could not be written, so the call was not made; try again later'),
  },
  approval_required: {
    retryable: true,
    http: 403,
    message: (d) =>
      `this call needs a person's approval and was not sent (approval ${String(d.approval_id)}, open until ${String(d.expires_at)}); ` +
      'wait, check it with get_approval, then call again with exactly the same arguments',
  },
  approval_denied: {
    retryable: false,
    http: 403,
    message: (d) =>
      `a person denied this call (approval ${String(d.approval_id)}${typeof d.note === 'string' && d.note ? `: ${d.note}` : ''})`,
  },
  approval_not_found: {
    retryable: false,
    http: 404,
    message: say('this key has no approval request with that id'),
  },
  approval_expired: {
    retryable: false,
    http: 403,
    message: (d) =>
      `the approval request for this call expired at ${String(d.expired_at)} without being used; nothing was sent`,
  },
  internal_error: { retryable: false, http: 500, message: say('internal error') },
};

const UNKNOWN: RefusalKind = { retryable: false, http: 403, message: say('denied') };

/** The table entry for a code; unknown codes are refusals that a retry cannot fix. */
export function refusalKind(code: string): RefusalKind {
  return REFUSALS[code] ?? UNKNOWN;
}
