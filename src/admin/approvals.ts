import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import {
  cancelledText,
  decideApproval,
  getApproval,
  listApprovals,
  MAX_BY,
  MAX_NOTE,
} from '../approvals/store.js';
import type { Actor } from '../audit/operator-actions.js';
import type { Db } from '../db/database.js';
import { sendJson } from '../http/kit.js';
import type { Alerts } from './alerts.js';

const decisionBody = z
  .strictObject({
    note: z.string().max(MAX_NOTE, `expected at most ${MAX_NOTE} characters`).optional(),
    by: z.string().min(1).max(MAX_BY, `expected at most ${MAX_BY} characters`).optional(),
  })
  .optional();

/**
 * The name a decision records: the caller's (an operator's, or `admin`), followed by a `by` the body gives in
 * parentheses (a bot sharing a token can say which one it is, but never stands in for the name the token proved).
 */
export function decidedBy(actor: Actor, by: string | undefined): Actor {
  const label = by?.trim();
  return label && label !== actor.name ? { ...actor, name: `${actor.name} (${label})` } : actor;
}

/**
 * `/admin/approvals` (behind an operator or admin token, checked by the caller): GET the list (`?pending=1`,
 * `?limit=N`), GET one, POST `/{id}/approve` or `/{id}/deny` with `{note?, by?}`, recorded as `actor`. Returns false
 * for any other path.
 */
export async function approvalRoutes(
  db: Db,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  body: () => Promise<unknown>,
  actor: Actor,
  alerts?: Alerts,
): Promise<boolean> {
  const path = url.pathname.replace(/\/+$/, '');
  if (path !== '/admin/approvals' && !path.startsWith('/admin/approvals/')) return false;
  const method = req.method ?? 'GET';
  if (method === 'GET' && path === '/admin/approvals') {
    const q = url.searchParams;
    const limitText = q.get('limit');
    const limit = limitText !== null && /^\d{1,4}$/.test(limitText) ? Number(limitText) : undefined;
    if (limitText !== null && !limit) {
      sendJson(res, 400, { error: 'limit: expected a whole number from 1 to 1000' });
      return true;
    }
    const pending = q.get('pending') === '1' || q.get('pending') === 'true' || q.get('status') === 'pending';
    sendJson(res, 200, { approvals: await listApprovals(db, { pending, ...(limit ? { limit } : {}) }) });
    return true;
  }
  const one = /^\/admin\/approvals\/([^/]+)$/.exec(path);
  if (method === 'GET' && one?.[1]) {
    const a = await getApproval(db, one[1]);
    sendJson(res, a ? 200 : 404, a ? { approval: a } : { error: `no approval request ${one[1]}` });
    return true;
  }
  const act = /^\/admin\/approvals\/([^/]+)\/(approve|deny)$/.exec(path);
  if (method === 'POST' && act?.[1] && act[2]) {
    const parsed = decisionBody.safeParse(await body());
    if (!parsed.success) {
      sendJson(res, 400, { error: z.prettifyError(parsed.error) });
      return true;
    }
    const decision = act[2] === 'approve' ? 'approved' : 'denied';
    const who = decidedBy(actor, parsed.data?.by);
    const r = await decideApproval(db, act[1], decision, who, parsed.data?.note);
    if (r.ok) {
      alerts?.notify({
        type: 'operator_action',
        action: decision === 'approved' ? 'approval.approve' : 'approval.deny',
        target: `approval:${r.approval.id}`,
        by: who.name,
        via: who.via,
      });
      sendJson(res, 200, { approval: r.approval });
    } else if (r.reason === 'not_found') sendJson(res, 404, { error: `no approval request ${act[1]}` });
    else if (r.reason === 'cancelled' && r.approval)
      sendJson(res, 409, {
        error: `the request was ${cancelledText(r.approval)}`,
        code: r.approval.cancel_reason,
        approval: r.approval,
      });
    else
      sendJson(res, 409, {
        error:
          r.reason === 'expired'
            ? 'the request has expired and can no longer be decided'
            : `the request is already ${r.approval?.status ?? 'decided'}`,
        approval: r.approval ?? null,
      });
    return true;
  }
  sendJson(res, 404, { error: `no admin route ${method} ${path}` });
  return true;
}
