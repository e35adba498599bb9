import type { Db } from '../db/database.js';
import { getApproval, type ApprovalRow } from './store.js';
import type { ApprovalWaits } from './wait.js';

/** One approval request of this key, as the agent may see it. */
export interface ApprovalView {
  approval_id: string;
  status: 'pending' | 'approved' | 'denied' | 'expired' | 'used' | 'cancelled';
  tool: string;
  usd_micros: number;
  created_at: string;
  expires_at: string;
  decided_at: string | null;
  note: string | null;
  /** Why a cancelled request was closed (`key_revoked`); null otherwise. */
  cancel_reason: string | null;
}

/** How long `get_approval` may hold a call open for a decision. */
export const MAX_WAIT_SECONDS = 25;

/** Wait for a pending request to be decided: at most `seconds`, and no longer than `signal` lives. */
export interface ApprovalWait {
  waits: ApprovalWaits;
  seconds: number;
  signal?: AbortSignal | undefined;
}

const view = (a: ApprovalRow): ApprovalView => ({
  approval_id: a.id,
  status: a.status,
  tool: a.tool,
  usd_micros: a.usd_micros,
  created_at: a.created_at.toISOString(),
  expires_at: a.expires_at.toISOString(),
  decided_at: a.decided_at?.toISOString() ?? null,
  note: a.note,
  cancel_reason: a.cancel_reason,
});

/**
 * A key's own approval request as `get_approval` shows it; another key's is not found. With `wait`, a pending
 * request is answered once it is decided, cancelled or expired, when the wait runs out, or when the caller goes.
 */
export async function approvalView(
  db: Db,
  keyId: string,
  id: string,
  wait?: ApprovalWait,
): Promise<ApprovalView | undefined> {
  let a = await getApproval(db, id, keyId);
  if (!a || !wait) return a && view(a);
  const until = Date.now() + Math.min(Math.max(wait.seconds, 0), MAX_WAIT_SECONDS) * 1000;
  while (a.status === 'pending') {
    // Its expiry ends the wait too (by this clock; the database's read below has the last word).
    const left = Math.min(until, a.expires_at.getTime()) - Date.now();
    if (left <= 0) break;
    if ((await wait.waits.changed(a.id, left, wait.signal)) === 'stopped') break;
    a = (await getApproval(db, id, keyId)) ?? a;
  }
  return view(a);
}
