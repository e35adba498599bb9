import type { Db } from '../db/database.js';
import type { ApprovalView } from '../pipeline/tool.js';
import { getApproval } from './store.js';

/** A key's own approval request as `get_approval` shows it; another key's is not found. */
export async function approvalView(db: Db, keyId: string, id: string): Promise<ApprovalView | undefined> {
  const a = await getApproval(db, id, keyId);
  if (!a) return undefined;
  return {
    approval_id: a.id,
    status: a.status,
    tool: a.tool,
    usd_micros: a.usd_micros,
    created_at: a.created_at.toISOString(),
    expires_at: a.expires_at.toISOString(),
    decided_at: a.decided_at?.toISOString() ?? null,
    note: a.note,
  };
}
