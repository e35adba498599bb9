// A policy's shadow version decides every call the enforced version decides, in process, and decides nothing: its
// verdict goes into the audit row (`metadata.shadow`), and its caps and wires are measured by the same admission
// statement from the same reservation figures (nothing is reserved for it).
import { windowsFor } from '../ledger/windows.js';
import { decideCall } from '../policy/decide-call.js';
import { compareShadow, isPolicyCode, type Disagreement, type ShadowRecord } from '../policy/shadow.js';
import { tripwiresFor, type TripwireCheck } from '../policy/tripwires.js';
import type { CompiledPolicy } from '../policy/compile.js';
import type { BudgetWindow } from '../db/schema.js';
import type { CallState, StageResult } from './call-state.js';
import type { PipelineDeps } from './deps.js';
import { parseInput, pricingFrom, withoutNulls } from './tool.js';

/** What admission measures for a shadow that allows the call: its windows and cost. */
export interface ShadowAdmission {
  windows: BudgetWindow[];
  cost: number;
}

/**
 * Decides the call under the key's policy's shadow, if it has one, once the enforced version has decided (`stop`:
 * its refusal, or undefined when it admits the call to admission). Only calls the enforced policy decided are
 * compared: those refused before (the key, the input, a vendor lookup that failed) would be the same under any version.
 */
export function decideShadow(s: CallState, deps: PipelineDeps, stop: StageResult): void {
  const key = s.key;
  const tool = s.tool;
  if (!key || !tool || stop === 'restart' || (stop && !isPolicyCode(stop.code))) return;
  const policy = deps.shadows?.get(key.policy.name);
  if (!policy || policy.version === key.policy.version) return;
  const record = shadowDecision(s, deps, policy);
  s.draft.metadata.shadow = record.record;
  s.shadow = { policy, record: record.record, cost: record.cost };
}

function shadowDecision(
  s: CallState,
  deps: PipelineDeps,
  policy: CompiledPolicy,
): { record: ShadowRecord; cost: number } {
  const tool = s.tool!;
  const key = s.key!;
  const base = { version: policy.version };
  if (!policy.tools.has(tool.name)) {
    const code = s.req.door === 'http' ? 'endpoint_not_allowed' : 'tool_not_allowed';
    return { record: { ...base, decision: 'denied', code }, cost: 0 };
  }
  let input = s.input;
  if (input === undefined) {
    const parsed = parseInput(tool, withoutNulls(s.req.args ?? {}));
    if (!parsed.ok)
      return { record: { ...base, decision: 'unknown', code: null, reason: 'invalid input' }, cost: 0 };
    input = parsed.input;
  }
  // The enforced version refused the tool before its vendor lookup ran: what the lookup would have said is unknown.
  if (tool.lookup && s.looked === undefined)
    return {
      record: {
        ...base,
        decision: 'unknown',
        code: null,
        reason: 'needs the vendor lookup the enforced policy skipped',
      },
      cost: 0,
    };
  const { decision, costMicros } = decideCall({
    tool,
    input,
    looked: s.looked,
    policy,
    key: { revokedAt: key.revoked_at, expiresAt: key.expires_at },
    now: new Date(),
    pricing: pricingFrom(deps.config),
  });
  if (!decision.allow) return { record: { ...base, decision: 'denied', code: decision.code }, cost: 0 };
  if (decision.approval) return { record: { ...base, decision: 'held', code: 'approval_required' }, cost: 0 };
  return { record: { ...base, decision: 'allowed', code: null }, cost: costMicros };
}

/**
 * The shadow's caps for admission to measure: only when its rules allow the call (a refusal needs no figure), and only
 * when they differ from the enforced version's. Equal caps decide as the enforced ones do, so nothing is sent (the
 * batch keeps its set-based path) and the record says so (`caps_same`).
 */
export function shadowAdmission(s: CallState, deps: PipelineDeps): ShadowAdmission | undefined {
  if (!s.shadow || s.shadow.record.decision !== 'allowed') return undefined;
  if (s.shadow.cost === s.cost && sameAsEnforced(s.shadow.policy, s.key!.policy).caps) {
    s.shadow.record.caps_same = true;
    return undefined;
  }
  const requests = s.tool!.countsAsRequest !== false;
  return { windows: windowsFor(s.shadow.policy, s.key!.id, deps.clock.now(), requests), cost: s.shadow.cost };
}

/**
 * The shadow's wires, measured as `shadow` wires (recorded, nothing done) beside the enforced ones, each tagged with
 * the shadow's version: admission turns one that would pause or revoke into the shadow's `tripwire_tripped`. Wires
 * equal to the enforced version's trip as they do: none are sent, and the record says so (`wires_same`).
 */
export function shadowTripwires(s: CallState): TripwireCheck[] {
  if (!s.shadow || s.shadow.record.decision !== 'allowed' || s.tool?.countsAsRequest === false) return [];
  if (sameAsEnforced(s.shadow.policy, s.key!.policy).wires) {
    s.shadow.record.wires_same = true;
    return [];
  }
  const version = s.shadow.policy.version;
  return tripwiresFor(s.shadow.policy, s.key!).map((w) => ({
    ...w,
    mode: 'shadow',
    shadow_version: version,
  }));
}

/** Whether a shadow's caps and wires agree with its enforced version's, worked out once per pair of versions. */
const sameness = new WeakMap<CompiledPolicy, WeakMap<CompiledPolicy, { caps: boolean; wires: boolean }>>();

/** Whether a shadow's caps (what windowsFor reads) and wires (tripwiresFor) are those of the enforced version. */
function sameAsEnforced(shadow: CompiledPolicy, enforced: CompiledPolicy): { caps: boolean; wires: boolean } {
  let byShadow = sameness.get(enforced);
  if (!byShadow) sameness.set(enforced, (byShadow = new WeakMap()));
  let same = byShadow.get(shadow);
  if (!same) {
    const [a, b] = [shadow.limits, enforced.limits];
    same = {
      caps:
        a.perKeyDailyMicros === b.perKeyDailyMicros &&
        a.perKeyHourlyRequests === b.perKeyHourlyRequests &&
        a.dailyMicros === b.dailyMicros &&
        a.hourlyRequests === b.hourlyRequests,
      wires: JSON.stringify(shadow.tripwires) === JSON.stringify(enforced.tripwires),
    };
    byShadow.set(shadow, same);
  }
  return same;
}

/** What the shadow would have changed about the call as it ended (for /metrics), or null. */
export function shadowDisagreement(
  s: CallState,
  decision: string,
  code: string | null,
  final: ShadowRecord | undefined,
): Disagreement | 'undecidable' | null {
  const record = final ?? s.shadow?.record;
  return record ? compareShadow(decision, code, record) : null;
}
