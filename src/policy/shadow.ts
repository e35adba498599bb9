// Shadow policies: a version decided beside the enforced one on every live call, deciding nothing. What the audit row
// keeps of that decision, and how it is compared with what happened. Pure.

/** How a call would have ended under the shadow version. `unknown`: it could not be decided (see `reason`). */
export type ShadowDecision = 'allowed' | 'held' | 'denied' | 'unknown';

/** `metadata.shadow` of an audit row. */
export interface ShadowRecord {
  version: number;
  decision: ShadowDecision;
  /** The refusal code when denied (a rule's, a cap's, or tripwire_tripped with `wire`), approval_required when held. */
  code: string | null;
  /** The wire that would have tripped. */
  wire?: string;
  /** Why the shadow could not decide. */
  reason?: string;
  /** Its caps (or wires) are the enforced version's: they refuse exactly what the enforced ones refuse. */
  caps_same?: true;
  wires_same?: true;
}

/** How the shadow differs from what happened: what the call would now be. */
export type Disagreement = 'now_denied' | 'now_allowed' | 'now_held' | 'now_tripped';

export const DISAGREEMENTS: readonly Disagreement[] = [
  'now_denied',
  'now_allowed',
  'now_held',
  'now_tripped',
];

/**
 * Refusals a policy decides (its rules, its caps, its wires), so a shadow can disagree with them. Others — the key,
 * its input, a vendor lookup, a person's no, the loop guard, an unknown outcome — would be the same under any version.
 */
const POLICY_CODES = new Set([
  'tool_not_allowed',
  'endpoint_not_allowed',
  'currency_not_supported',
  'amount_over_limit',
  'customer_not_allowed',
  'recipient_not_allowed',
  'too_many_recipients',
  'too_many_segments',
  'parameter_not_allowed',
  'budget_exceeded',
  'request_limit_exceeded',
  'tripwire_tripped',
]);

/** A refusal some policy version decides (and a shadow may decide otherwise). */
export const isPolicyCode = (code: string): boolean => POLICY_CODES.has(code);

/**
 * What the shadow would have changed about a call that ended `decision` with `code`: null when they agree (both
 * denied, whatever the codes) or the call ended for a reason no policy decides; `undecidable` when the shadow could
 * not decide.
 */
export function compareShadow(
  decision: string,
  code: string | null,
  shadow: Pick<ShadowRecord, 'decision' | 'code' | 'caps_same' | 'wires_same'>,
): Disagreement | 'undecidable' | null {
  const enforced =
    decision === 'allowed'
      ? 'allowed'
      : decision === 'held' || code === 'approval_required'
        ? 'held'
        : 'denied';
  if (enforced === 'denied' && !POLICY_CODES.has(code ?? '')) return null;
  if (shadow.decision === 'unknown') return 'undecidable';
  // Caps or wires equal to the enforced version's were not measured apart: they refused this call too.
  if (enforced === 'denied' && shadow.decision === 'allowed') {
    if ((code === 'budget_exceeded' || code === 'request_limit_exceeded') && shadow.caps_same) return null;
    if (code === 'tripwire_tripped' && shadow.wires_same) return null;
  }
  if (shadow.decision === enforced) return null;
  if (shadow.decision === 'denied') return shadow.code === 'tripwire_tripped' ? 'now_tripped' : 'now_denied';
  return shadow.decision === 'held' ? 'now_held' : 'now_allowed';
}

/** A stored `metadata.shadow`, or undefined when the row has none (or not in this shape). */
export function shadowOf(metadata: unknown): ShadowRecord | undefined {
  const s = (metadata as { shadow?: unknown } | null | undefined)?.shadow;
  if (typeof s !== 'object' || s === null) return undefined;
  const r = s as Partial<ShadowRecord>;
  if (typeof r.version !== 'number' || typeof r.decision !== 'string') return undefined;
  return {
    version: r.version,
    decision: r.decision,
    code: r.code ?? null,
    ...(r.wire ? { wire: r.wire } : {}),
    ...(r.caps_same === true ? { caps_same: true as const } : {}),
    ...(r.wires_same === true ? { wires_same: true as const } : {}),
  };
}
