import { z } from 'zod';
import { agentActivity, type AgentActivityRow } from '../../admin/agent-activity.js';
import type { Alerts } from '../../admin/alerts.js';
import { operatorRevoke, revokeTarget, type PauseView } from '../../admin/key-ops.js';
import { resumeChoice } from '../../admin/resume-choice.js';
import {
  cancelledText,
  decideApproval,
  listApprovals,
  MAX_NOTE,
  type ApprovalRow,
} from '../../approvals/store.js';
import type { Db } from '../../db/database.js';
import type { Actor } from '../../audit/operator-actions.js';
import { spendReport, type SpendRow } from '../../ledger/spend.js';
import { databaseNow } from '../../db/clock.js';
import { dayStart } from '../../ledger/windows.js';
import { unknownOutcomes } from '../../audit/unknown.js';
import { HttpError } from '../../http/kit.js';

/**
 * What the server offers beyond the fixed panels; the console shows a panel only when its flag is true.
 * `approvals`: pending approval requests, approved or denied from the console (on unless turned off).
 */
export interface ConsoleFeatures {
  approvals: boolean;
}

/** A pending approval request as the console shows it: the held call's details, never the link's nonce. */
export type ConsoleApproval = Pick<
  ApprovalRow,
  | 'id'
  | 'tool'
  | 'operation'
  | 'agent'
  | 'run_id'
  | 'key_id'
  | 'policy'
  | 'usd_micros'
  | 'amount'
  | 'currency'
  | 'request'
  | 'created_at'
  | 'expires_at'
>;

const MAX_PENDING_SHOWN = 50;

async function pendingApprovals(db: Db): Promise<ConsoleApproval[]> {
  const rows = await listApprovals(db, { pending: true, limit: MAX_PENDING_SHOWN });
  return rows.map((a) => ({
    id: a.id,
    tool: a.tool,
    operation: a.operation,
    agent: a.agent,
    run_id: a.run_id,
    key_id: a.key_id,
    policy: a.policy,
    usd_micros: a.usd_micros,
    amount: a.amount,
    currency: a.currency,
    request: a.request,
    created_at: a.created_at,
    expires_at: a.expires_at,
  }));
}

const DAYS = 7;
/** LEASH_UNKNOWN_ALERT_AGE's default. */
const DEFAULT_UNKNOWN_AGE = 900;

export interface Overview {
  now: string;
  today: string;
  features: ConsoleFeatures;
  /** Pending approval requests, oldest first (empty when the feature is off). */
  approvals: ConsoleApproval[];
  spend: {
    policies: SpendRow[];
    /** Per agent today, with the policy (and its daily cap) the agent's spend counts against when it uses one. */
    agents: (SpendRow & { policy: string | null; cap_micros: number | null })[];
    /** The last 7 UTC days, oldest first; days without calls are present with zeros. */
    days: {
      day: string;
      held_micros: number;
      cost_micros: number;
      reserved_micros: number;
      requests: number;
    }[];
  };
  /**
   * Calls whose outcome has been unknown longer than LEASH_UNKNOWN_ALERT_AGE (the vendor may have acted, so
   * the money they reserved stays reserved): how many, since when, and the oldest ones' audit ids.
   */
  unknown: { count: number; older_than_seconds: number; oldest: string | null; audit_ids: string[] };
  /**
   * The agents view: active keys busiest first (calls per minute over the last 15 minutes, denials, last call,
   * today's spend against the caps that bind them), at most 100; `active_keys` counts them all.
   */
  agents: {
    window_minutes: number;
    active_keys: number;
    rows: (AgentActivityRow & { spent_today_micros: number })[];
  };
}

/** The numbers behind the agents view and the Spend panel, in one read (aggregates over recent audit rows). */
export async function overview(
  db: Db,
  features: ConsoleFeatures,
  at?: Date,
  o: { unknownAgeSeconds?: number } = {},
): Promise<Overview> {
  // "Today" by the database's clock, as admission counts it, not this machine's.
  const now = at ?? (await databaseNow(db));
  const today = dayStart(now);
  const weekStart = new Date(today.getTime() - (DAYS - 1) * 86_400_000);
  const unknownAge = o.unknownAgeSeconds ?? DEFAULT_UNKNOWN_AGE;
  const [policies, agents, byKey, days, approvals, unknown, activity] = await Promise.all([
    spendReport(db, { by: 'policy' }, now),
    spendReport(db, { by: 'agent' }, now),
    spendReport(db, { by: 'key' }, now),
    spendReport(db, { by: 'day', since: weekStart }, now),
    features.approvals ? pendingApprovals(db) : [],
    unknownOutcomes(db, unknownAge, 5),
    agentActivity(db, now),
  ]);
  const policyCap = new Map(policies.rows.map((r) => [r.group, r.cap_micros]));
  // An agent's spend counts against its policy's daily cap; say which one when the agent used exactly one today.
  const agentPolicies = new Map<string, Set<string>>();
  for (const r of byKey.rows) {
    if (!r.agent || !r.policy) continue;
    let set = agentPolicies.get(r.agent);
    if (!set) agentPolicies.set(r.agent, (set = new Set()));
    set.add(r.policy);
  }
  const keySpend = new Map(byKey.rows.map((r) => [r.group, r]));
  const dayRows = new Map(days.rows.map((r) => [r.group, r]));
  return {
    now: now.toISOString(),
    today: today.toISOString(),
    features,
    approvals: approvals.reverse(),
    unknown: {
      count: unknown.count,
      older_than_seconds: unknownAge,
      oldest: unknown.oldest?.toISOString() ?? null,
      audit_ids: unknown.ids,
    },
    agents: {
      window_minutes: activity.window_minutes,
      active_keys: activity.active_keys,
      // A key's spend today: its own window when its policy caps keys, else its allowed calls' today.
      rows: activity.rows.map((r) => ({
        ...r,
        spent_today_micros: r.key_held_micros ?? keySpend.get(r.key_id)?.held_micros ?? 0,
      })),
    },
    spend: {
      policies: policies.rows,
      agents: agents.rows.map((r) => {
        const only = [...(agentPolicies.get(r.group ?? '') ?? [])];
        const policy = only.length === 1 ? (only[0] ?? null) : null;
        return { ...r, policy, cap_micros: policy ? (policyCap.get(policy) ?? null) : null };
      }),
      days: Array.from({ length: DAYS }, (_, i) => {
        const day = new Date(weekStart.getTime() + i * 86_400_000).toISOString().slice(0, 10);
        const r = dayRows.get(day);
        return {
          day,
          held_micros: r?.held_micros ?? 0,
          cost_micros: r?.cost_micros ?? 0,
          reserved_micros: r?.reserved_micros ?? 0,
          requests: r?.requests ?? 0,
        };
      }),
    },
  };
}

const MAX_REASON = 500;

export const revokeRequest = z
  .strictObject({
    key_id: z.string().min(1).max(100).optional(),
    agent: z.string().min(1).max(200).optional(),
    run_id: z.string().min(1).max(200).optional(),
    reason: z.string().max(MAX_REASON, `expected at most ${MAX_REASON} characters`).optional(),
  })
  .refine((b) => [b.key_id, b.agent, b.run_id].filter(Boolean).length === 1, {
    message: 'give exactly one of key_id, agent or run_id',
  });

/** Revokes a key, a run or an agent (as the admin API does) as `by`, and alerts; returns the ids revoked now. */
export async function revokeFromConsole(
  db: Db,
  body: z.infer<typeof revokeRequest>,
  alerts: Alerts | undefined,
  by: Actor,
): Promise<string[]> {
  const why = body.reason?.trim() || 'revoked by operator (console)';
  return operatorRevoke(db, revokeTarget(body), { reason: why, by, alerts });
}

export const resumeRequest = z
  .strictObject({
    key_id: z.string().min(1).max(100).optional(),
    run_id: z.string().min(1).max(200).optional(),
    agent: z.string().min(1).max(200).optional(),
    policy: z.string().min(1).max(100).optional(),
  })
  .refine((b) => [b.key_id, b.run_id, b.agent, b.policy].filter(Boolean).length === 1, {
    message: 'give exactly one of key_id, run_id, agent or policy',
  });

/**
 * Resumes a paused key, run, agent or policy (as the admin API does) as `by`, and alerts; answers the pause it ended
 * (null: it was not paused). A scope of the wrong shape is a 400 naming the field.
 */
export async function resumeFromConsole(
  db: Db,
  body: z.infer<typeof resumeRequest>,
  alerts: Alerts | undefined,
  by: Actor,
): Promise<PauseView | null> {
  const r = await resumeChoice(db, body, { by, alerts });
  if ('error' in r) throw new HttpError(400, r.error);
  return r.ended;
}

export const decisionRequest = z.strictObject({
  note: z.string().max(MAX_NOTE, `expected at most ${MAX_NOTE} characters`).optional(),
});

/** Approves or denies a pending request from the console; the answer says why nothing changed, if so. */
export async function decideFromConsole(
  db: Db,
  id: string,
  decision: 'approved' | 'denied',
  note: string | undefined,
  by: Actor,
): Promise<{ status: number; body: unknown }> {
  const r = await decideApproval(db, id, decision, by, note?.trim() || undefined);
  if (r.ok) return { status: 200, body: { approval: { id: r.approval.id, status: r.approval.status } } };
  if (r.reason === 'not_found') return { status: 404, body: { error: 'no such approval request' } };
  const error =
    r.reason === 'expired'
      ? 'the request has expired and can no longer be decided'
      : r.reason === 'cancelled' && r.approval
        ? `the request was ${cancelledText(r.approval)}`
        : `the request is already ${r.approval?.status ?? 'decided'}`;
  return { status: 409, body: { error } };
}
