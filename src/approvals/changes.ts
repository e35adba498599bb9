/** Hears ids of approval requests that were decided or cancelled in this process. */
export type ApprovalListener = (ids: readonly string[]) => void;

const listeners = new Set<ApprovalListener>();

/**
 * Tells this process's waiters (`get_approval` with `wait_seconds`) that these requests changed, after the change
 * committed, so they answer at once. Other processes see the change by polling (see wait.ts).
 */
export function approvalsChanged(ids: readonly string[]): void {
  if (!ids.length) return;
  for (const listener of listeners) {
    try {
      listener(ids);
    } catch {
      // A waiter's failure never affects the decision that was made.
    }
  }
}

/** Subscribes; returns the unsubscribe. */
export function onApprovalsChanged(listener: ApprovalListener): () => void {
  listeners.add(listener);
  return () => void listeners.delete(listener);
}
