// What a call's admission or refusal says about tripwires, told to whoever listens (alerts, metrics, the log).
import { approvalsChanged } from '../approvals/changes.js';
import type { TripwireEvent } from '../audit/write.js';
import type { CallState } from './call-state.js';
import { emit, type PipelineDeps } from './deps.js';

/**
 * One `tripwire` event per wire that tripped or alerted on this call (admission decides that once across replicas, so
 * each is raised once), a log line for each, and the waiters of approval requests a wire's revoke closed.
 */
export function raiseTripwires(
  deps: PipelineDeps,
  s: CallState,
  r: { tripwires?: TripwireEvent[] | undefined; approvals_cancelled?: string[] | undefined },
): void {
  for (const t of r.tripwires ?? []) {
    deps.log.info(t.action === 'alert' ? 'tripwire alert' : 'tripwire tripped', {
      wire: t.wire,
      policy: t.policy,
      scope: `${t.scope_kind}:${t.scope}`,
      figure: t.figure,
      limit: t.limit,
      action: t.action,
      audit_id: s.id,
    });
    emit(deps, {
      ...t,
      type: 'tripwire',
      key_id: s.key?.id ?? '',
      agent: s.key?.agent ?? '',
      tool: s.name,
      audit_id: s.id,
    });
  }
  if (r.approvals_cancelled?.length) approvalsChanged(r.approvals_cancelled);
}
