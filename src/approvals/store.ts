import { sql } from 'kysely';
import { actorName, type Actor } from '../audit/operator-actions.js';
import type { Db } from '../db/database.js';
import type { ApprovalStatus } from '../db/schema.js';
import { approvalsChanged } from './changes.js';

/** An approval request as operators and agents read it (never the link's nonce hash). */
export interface ApprovalRow {
  id: string;
  /** As of now: a pending or approved request past its expiry reads `expired` even before the sweep marks it. */
  status: ApprovalStatus;
  key_id: string;
  agent: string | null;
  run_id: string | null;
  policy: string | null;
  tool: string;
  operation: string | null;
  door: string;
  args_hash: string;
  request: Record<string, unknown> | null;
  usd_micros: number;
  amount: number | null;
  currency: string | null;
  created_at: Date;
  expires_at: Date;
  decided_at: Date | null;
  decided_by: string | null;
  note: string | null;
  used_at: Date | null;
  used_by_audit_id: string | null;
  held_audit_id: string;
  /** Set when the request was closed without a decision: `key_revoked` (its key, run or agent was revoked). */
  cancelled_at: Date | null;
  cancel_reason: string | null;
}

/** Longest approver name and note kept. */
export const MAX_NOTE = 500;
export const MAX_BY = 200;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a string that can be an approval id (a uuid); anything else is simply not found. */
export function isApprovalId(id: string): boolean {
  return UUID.test(id);
}

const COLUMNS = sql`id,
  case when status in ('pending', 'approved') and expires_at <= clock_timestamp() then 'expired' else status end
    as status,
  key_id, agent, run_id, policy, tool, operation, door, args_hash, request, usd_micros, amount, currency,
  created_at, expires_at, decided_at, decided_by, note, used_at, used_by_audit_id, held_audit_id, cancelled_at,
  cancel_reason`;

/** One request by id, or undefined. `keyId` restricts it to one key's own requests (what an agent may see). */
export async function getApproval(db: Db, id: string, keyId?: string): Promise<ApprovalRow | undefined> {
  if (!isApprovalId(id)) return undefined;
  const { rows } = await sql<ApprovalRow>`select ${COLUMNS} from approvals
    where id = ${id}::uuid ${keyId !== undefined ? sql`and key_id = ${keyId}` : sql``}`.execute(db);
  return rows[0];
}

/** Requests newest first; `pending` = still waiting for a person (and not expired). */
export async function listApprovals(
  db: Db,
  o: { pending?: boolean; limit?: number } = {},
): Promise<ApprovalRow[]> {
  const limit = Math.min(Math.max(Math.trunc(o.limit ?? 100), 1), 1000);
  const { rows } = await sql<ApprovalRow>`select ${COLUMNS} from approvals
    ${o.pending ? sql`where status = 'pending' and expires_at > clock_timestamp()` : sql``}
    order by created_at desc limit ${limit}`.execute(db);
  return rows;
}

/** Why a cancelled request can no longer be decided, in words that carry its code (`key_revoked`). */
export function cancelledText(a: Pick<ApprovalRow, 'cancel_reason' | 'cancelled_at'>): string {
  const why = a.cancel_reason === 'key_revoked' ? 'its key was revoked' : 'it was closed';
  return `cancelled (${a.cancel_reason ?? 'cancelled'}: ${why}${a.cancelled_at ? ` at ${a.cancelled_at.toISOString()}` : ''}); it can no longer be decided`;
}

export type Decision = 'approved' | 'denied';

export type DecideResult =
  | { ok: true; approval: ApprovalRow }
  | {
      ok: false;
      reason: 'not_found' | 'expired' | 'cancelled' | 'already_decided' | 'link_invalid';
      approval?: ApprovalRow;
    };

/**
 * Approves or denies a pending, unexpired request in one conditional update (a second approver, an expired
 * request or a used link changes nothing), and stamps the decision on the held audit rows of that request.
 * With `nonceHash`, only the signed link whose nonce this is may decide, and the link is spent in the same update.
 * The decision is recorded as an operator action in the same statement; `by` as a plain string is a caller that
 * names no door (recorded as `system`).
 */
export async function decideApproval(
  db: Db,
  id: string,
  decision: Decision,
  by: string | Actor,
  note: string | undefined,
  nonceHash?: Buffer,
): Promise<DecideResult> {
  if (!isApprovalId(id)) return { ok: false, reason: 'not_found' };
  const actor: Actor = typeof by === 'string' ? { name: by, via: 'system' } : by;
  const who = actorName(actor).slice(0, MAX_BY);
  const why = note?.slice(0, MAX_NOTE) ?? null;
  const action = decision === 'approved' ? 'approval.approve' : 'approval.deny';
  const { rows } = await sql<{ id: string }>`
    with d as (
      update approvals set status = ${decision}, decided_at = clock_timestamp(), decided_by = ${who}, note = ${why},
          link_nonce_hash = null
        where id = ${id}::uuid and status = 'pending' and expires_at > clock_timestamp()
          ${nonceHash ? sql`and link_nonce_hash = ${nonceHash}` : sql``}
        returning id, key_id, args_hash, status, decided_at, decided_by, note, expires_at
    ), stamped as (
      update audit_log a set metadata = a.metadata || jsonb_build_object('approval', jsonb_build_object(
            'id', d.id, 'status', d.status, 'decided_by', d.decided_by, 'decided_at', d.decided_at,
            'note', d.note, 'expires_at', d.expires_at))
        from d
        where a.key_id = d.key_id and a.args_hash = d.args_hash and a.decision = 'held'
          and a.metadata->'approval'->>'id' = d.id::text
    ), logged as (
      insert into operator_actions (actor, via, action, target, detail)
        select d.decided_by, ${actor.via}, ${action}, 'approval:' || d.id::text,
            jsonb_strip_nulls(jsonb_build_object('key_id', d.key_id, 'note', d.note))
          from d
    )
    select id from d`.execute(db);
  if (rows.length) approvalsChanged([id]);
  const approval = await getApproval(db, id);
  if (rows.length && approval) return { ok: true, approval };
  if (!approval) return { ok: false, reason: 'not_found' };
  if (approval.status === 'expired') return { ok: false, reason: 'expired', approval };
  if (approval.status === 'cancelled') return { ok: false, reason: 'cancelled', approval };
  if (approval.status !== 'pending') return { ok: false, reason: 'already_decided', approval };
  return { ok: false, reason: 'link_invalid', approval };
}

/**
 * Cancels the open (pending, or approved and unused) requests of these keys, inside the caller's transaction (the
 * revoke's, under the keys' admission locks, so no request of theirs opens or is used meanwhile), and stamps the
 * held audit rows. Returns the ids cancelled; tell waiters with `approvalsChanged` once the transaction commits.
 */
export async function cancelForKeys(trx: Db, keyIds: readonly string[], reason: string): Promise<string[]> {
  if (!keyIds.length) return [];
  const { rows } = await sql<{ id: string }>`
    with c as (
      update approvals set status = 'cancelled', cancelled_at = clock_timestamp(), cancel_reason = ${reason},
          link_nonce_hash = null
        where id in (
          -- In id order, as the expiry sweep locks them, so the two never wait on each other in a circle.
          select id from approvals
            where key_id = any(${[...keyIds]}::text[]) and status in ('pending', 'approved')
              and expires_at > clock_timestamp()
            order by id
            for update)
        returning id, key_id, args_hash, cancelled_at, cancel_reason
    ), stamped as (
      update audit_log a set metadata = a.metadata || jsonb_build_object('approval',
            coalesce(a.metadata->'approval', '{}') || jsonb_build_object(
              'status', 'cancelled', 'cancelled_at', c.cancelled_at, 'reason', c.cancel_reason))
        from c
        where a.key_id = c.key_id and a.args_hash = c.args_hash and a.decision = 'held'
          and a.metadata->'approval'->>'id' = c.id::text
    )
    select id from c order by id`.execute(trx);
  return rows.map((r) => r.id);
}

/** Marks requests past their expiry `expired` and returns each once, for the `approval_expired` alert. */
export async function expireDue(db: Db): Promise<ApprovalRow[]> {
  const { rows } = await sql<ApprovalRow>`
    update approvals set status = 'expired', expired_at = coalesce(expired_at, clock_timestamp()),
        expiry_announced_at = clock_timestamp(), link_nonce_hash = null
      where id in (
        -- Locked in id order, so two sweeps (or a sweep and an admission) never wait on each other in a circle.
        select id from approvals
          where (status in ('pending', 'approved') and expires_at <= clock_timestamp())
             or (status = 'expired' and expiry_announced_at is null)
          order by id
          for update)
      returning ${COLUMNS}`.execute(db);
  return rows;
}

/**
 * Claims pending requests not yet announced (one replica each: skip locked), arming each with a link nonce
 * (`hash` gives the sha-256 to store). Returns them with their nonce's hash stored.
 */
export async function claimUnannounced(
  db: Db,
  arm: (row: ApprovalRow) => Buffer | undefined,
  limit = 50,
): Promise<ApprovalRow[]> {
  return db.transaction().execute(async (tx) => {
    const { rows } = await sql<ApprovalRow>`
      update approvals set announced_at = clock_timestamp()
        where id in (select id from approvals
                      where announced_at is null and status = 'pending' and expires_at > clock_timestamp()
                      order by created_at limit ${limit} for update skip locked)
        returning ${COLUMNS}`.execute(tx);
    for (const row of rows) {
      const hash = arm(row);
      if (hash)
        await sql`update approvals set link_nonce_hash = ${hash} where id = ${row.id}::uuid`.execute(tx);
    }
    return rows;
  });
}

/** Whether this nonce hash is the live link of a pending, unexpired request (for showing the page; changes nothing). */
export async function linkIsLive(db: Db, id: string, nonceHash: Buffer): Promise<boolean> {
  if (!isApprovalId(id)) return false;
  const { rows } = await sql<{ ok: boolean }>`select true as ok from approvals
    where id = ${id}::uuid and link_nonce_hash = ${nonceHash} and status = 'pending'
      and expires_at > clock_timestamp()`.execute(db);
  return rows.length > 0;
}
