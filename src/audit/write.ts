import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { BudgetWindow } from '../db/schema.js';
import type { ShadowRecord } from '../policy/shadow.js';
import type { TripwireCheck } from '../policy/tripwires.js';
import type { AuditHasher } from './audit-hash.js';
import {
  MAX_METADATA_BYTES,
  MAX_NAME_CHARS,
  MAX_REQUEST_BYTES,
  safeColumn,
  safeJson,
  safeText,
} from './sanitize.js';

/** The columns known before a call is decided. */
export interface AuditDraft {
  id: string;
  key_id: string | null;
  agent: string | null;
  run_id: string | null;
  policy: string | null;
  policy_version: number | null;
  tool: string;
  vendor: string | null;
  operation: string | null;
  account: string | null;
  request: Record<string, unknown> | null;
  args_hash: string | null;
  sandbox: boolean;
  /** Which front door: mcp or http. Defaults to mcp when omitted. */
  door?: 'mcp' | 'http';
  amount: number | null;
  currency: string | null;
  metadata: Record<string, unknown>;
}

export interface Admission {
  admitted: boolean;
  /** Not admitted: held for a person (code approval_required, details approval_id and expires_at). */
  held?: boolean;
  code: string | null;
  details: Record<string, unknown>;
  remaining_micros: number | null;
  /** Admitted: a WAL position written by admission's last, synchronously committed transaction (after the audit row). */
  durable_lsn?: string;
  /** Wires that tripped (the call refused tripwire_tripped) or alerted on this call: the caller raises the alerts. */
  tripwires?: TripwireEvent[];
  /** Approval requests a wire's revoke closed (their waiters are told). */
  approvals_cancelled?: string[];
  /** The policy's shadow version's decision as written to the row (its caps and wires measured here too). */
  shadow?: ShadowRecord;
}

/** A wire that tripped or alerted, as admission (leash_tripwires) reports it. */
export interface TripwireEvent {
  wire: string;
  metric: TripwireCheck['metric'];
  /** Calls, denials or recipients, or micro-USD for spend; this call included. */
  figure: number;
  limit: number;
  window_seconds: number;
  per: TripwireCheck['per'];
  scope_kind: TripwireCheck['kind'];
  scope: string;
  policy: string;
  mode: TripwireCheck['mode'];
  /** pause or revoke: it tripped; alert: it alerts (then: alert, or mode warn; `would` says what then it has). */
  action: 'pause' | 'revoke' | 'alert';
  would?: TripwireCheck['then'];
  revoked_keys?: number;
}

const SHORT = 256;

/**
 * The draft as it can be stored whatever the agent sent: every text jsonb-safe and capped, the request at most
 * MAX_REQUEST_BYTES and the metadata MAX_METADATA_BYTES. When the request had to change, metadata keeps the
 * audit hash (HMAC-SHA256 under the audit key) of the original (`args_sha256`) and `request_sanitized`.
 */
export function storableDraft(draft: AuditDraft, h: AuditHasher): AuditDraft {
  const metadata = safeJson(draft.metadata, h, MAX_METADATA_BYTES).value;
  let request: Record<string, unknown> | null = null;
  if (draft.request) {
    const r = safeJson(draft.request, h, MAX_REQUEST_BYTES);
    request = r.value;
    // A hash the caller took of the arguments before redacting them wins over the hash of what is stored.
    if (r.altered)
      Object.assign(metadata, { request_sanitized: true, args_sha256: metadata.args_sha256 ?? r.sha256 });
  }
  return {
    ...draft,
    key_id: safeColumn(draft.key_id, SHORT),
    agent: safeColumn(draft.agent, SHORT),
    run_id: safeColumn(draft.run_id, SHORT),
    policy: safeColumn(draft.policy, SHORT),
    tool: safeText(draft.tool, SHORT).text,
    vendor: safeColumn(draft.vendor, SHORT),
    operation: safeColumn(draft.operation, SHORT),
    account: safeColumn(draft.account, SHORT),
    currency: safeColumn(draft.currency, 16),
    // The row is built with jsonb_populate_record, which does not apply column defaults to missing keys.
    door: draft.door ?? 'mcp',
    request,
    metadata,
  };
}

export interface SettlePatch {
  vendor_request_id?: string | undefined;
  vendor_object_id?: string | undefined;
  http_status?: number | undefined;
  error?: string | undefined;
  amount?: number | undefined;
  currency?: string | undefined;
  latency_ms?: number | undefined;
  metadata?: Record<string, unknown> | undefined;
}

export interface Settlement {
  settled: boolean;
  reason?: string;
  outcome?: string;
  cost_micros?: number;
  reserved_micros?: number;
  cost_status?: string;
  /** Set when the call settled as a replay: the audit row that counts its object. */
  replay_of?: string | null;
}

/** The patch with every vendor-provided text jsonb-safe and capped (an error message echoing the agent's input included). */
export function storablePatch(patch: SettlePatch, h: AuditHasher): SettlePatch {
  const out: SettlePatch = { ...patch };
  if (patch.vendor_request_id !== undefined)
    out.vendor_request_id = safeText(patch.vendor_request_id, SHORT).text;
  if (patch.vendor_object_id !== undefined)
    out.vendor_object_id = safeText(patch.vendor_object_id, SHORT).text;
  if (patch.error !== undefined) out.error = safeText(patch.error).text;
  if (patch.currency !== undefined) out.currency = safeText(patch.currency, 16).text;
  if (patch.metadata !== undefined) out.metadata = safeJson(patch.metadata, h, MAX_METADATA_BYTES).value;
  return out;
}

/**
 * Settles an admitted call (asynchronous commit: a lost settle is recovered by reconcile). Idempotent. An object
 * another row of the same key owns makes it a replay of that row (cost 0); one another key's row owns throws
 * (unique_violation), so one object is never credited twice.
 */
export async function settleCall(
  db: Db,
  id: string,
  outcome: 'succeeded' | 'failed' | 'unknown',
  costMicros: number,
  costStatus: 'settled' | 'pending',
  patch: SettlePatch,
  h: AuditHasher,
): Promise<Settlement> {
  const { rows } = await sql<{
    r: Settlement;
  }>`select leash_settle_call(${id}::uuid, ${outcome}, ${costMicros}::bigint, ${costStatus}, ${JSON.stringify(storablePatch(patch, h))}::jsonb) as r`.execute(
    db,
  );
  return rows[0]?.r ?? { settled: false, reason: 'no_row' };
}

/** What admission needs beyond the row: who presents the key, which policy version was evaluated, what to reserve. */
export interface AdmitRequest {
  keyId: string;
  secretHash: string;
  policyVersion: number;
  cost: number;
  windows: BudgetWindow[];
  /** Set for calls with an effect: at most `limit` identical allowed calls per `seconds`. */
  loop: { limit: number; seconds: number } | null;
  /** Set when policy holds this call for a person: admitted only by consuming an approval for its digest. */
  approval?: { expiresSeconds: number; usdMicros: number } | undefined;
  /**
   * Set for calls with an effect: refused as outcome_pending while an identical call of this key (same arguments
   * digest) admitted in the last `seconds` has an unknown outcome; with `sameKey`, a call carrying that call's
   * idempotency key goes on (the vendor answers it with the first outcome).
   */
  pending?: { seconds: number; sameKey: boolean } | null | undefined;
  /** The policy's tripwires, each with the scope it measures (tripwiresFor); measured in the same statement. */
  tripwires?: readonly TripwireCheck[] | undefined;
  /** Who the call reaches (recipientsOf), for distinct_recipients_per_hour. */
  recipients?: readonly string[] | undefined;
  /**
   * leash's own lookups that call no vendor and spend nothing (get_budget, get_approval): served on a paused key, so the agent can
   * read why it is paused. Every other call of a paused key is refused key_paused.
   */
  pauseExempt?: boolean | undefined;
  /**
   * The policy's shadow version allows the call: its windows and cost, measured against the same figures as the
   * enforced windows (nothing reserved for it). A cap it would pass makes the row's `metadata.shadow` a refusal.
   */
  shadow?: { windows: readonly BudgetWindow[]; cost: number } | undefined;
}

export type AdmitResult = Admission | { stale: true; policy_version: number };

/** The JSON admission takes for one call (leash_admit_call's payload). */
export function admissionPayload(a: AdmitRequest, draft: AuditDraft, h: AuditHasher) {
  return {
    key_id: a.keyId,
    secret_hash: a.secretHash,
    policy_version: a.policyVersion,
    cost: a.cost,
    windows: a.windows,
    loop_limit: a.loop?.limit ?? null,
    loop_seconds: a.loop?.seconds ?? null,
    approval: a.approval
      ? { expires_seconds: a.approval.expiresSeconds, usd_micros: a.approval.usdMicros }
      : null,
    pending: a.pending ? { seconds: a.pending.seconds, same_key: a.pending.sameKey } : null,
    ...(a.pauseExempt ? { pause_exempt: true } : {}),
    ...(a.shadow ? { shadow: { windows: a.shadow.windows, cost: a.shadow.cost } } : {}),
    // Sent only when the policy has wires: a call without them keeps the batch's set-based path.
    ...(a.tripwires?.length
      ? { tripwires: a.tripwires, recipients: a.tripwires.some(countsRecipients) ? (a.recipients ?? []) : [] }
      : {}),
    row: storableDraft(draft, h),
  };
}

const countsRecipients = (w: TripwireCheck) => w.metric === 'distinct_recipients_per_hour';

/**
 * Admits calls in one round trip and one durable commit (`leash_admit_batch`): for each, in order, the key
 * re-check (secret, revoke, expiry, policy version, pauses), the loop guard, reservations in every window, the
 * policy's tripwires and the audit row.
 * Results come back in the order given. If this throws, call no vendor for any of them.
 */
export async function admitBatch(
  db: Db,
  payloads: readonly ReturnType<typeof admissionPayload>[],
): Promise<AdmitResult[]> {
  if (payloads.length === 1) {
    // A call alone: the single-call procedure (two transactions, the window rows held only until the first, which
    // commits asynchronously; the second re-checks the key and flushes) decides it the same way for less work.
    const one = await sql<{
      r: AdmitResult;
    }>`call leash_admission(${JSON.stringify(payloads[0])}::jsonb, null)`.execute(db);
    const r = one.rows[0]?.r;
    if (!r) throw new Error('admission returned no result');
    return [r];
  }
  const { rows } = await sql<{
    r: AdmitResult[];
  }>`select leash_admit_batch(${JSON.stringify(payloads)}::jsonb) as r`.execute(db);
  const r = rows[0]?.r;
  if (!Array.isArray(r) || r.length !== payloads.length) throw new Error('admission returned no result');
  return r;
}

/** Admits one call (a batch of one). If this throws, do not call the vendor. */
export async function admit(
  db: Db,
  a: AdmitRequest,
  draft: AuditDraft,
  h: AuditHasher,
): Promise<AdmitResult> {
  const [r] = await admitBatch(db, [admissionPayload(a, draft, h)]);
  if (!r) throw new Error('admission returned no result');
  return r;
}

export type DenialResult =
  | {
      code: string;
      details: Record<string, unknown>;
      /** Wires that tripped (code tripwire_tripped) or alerted on this denial. */
      tripwires?: TripwireEvent[];
      approvals_cancelled?: string[];
    }
  | { stale: true; policy_version: number };

/**
 * Writes a refusal decided before admission. With `key`, the key is re-checked in the same statement: a revoked,
 * expired, paused or wrong key wins over the evaluated code; a policy that moved on returns stale with nothing
 * written. With `key.tripwires`, the denial is counted by the policy's denials_per_minute wires in the same statement,
 * and the one that goes over a line is refused tripwire_tripped.
 */
export async function recordDenial(
  db: Db,
  draft: AuditDraft,
  code: string,
  details: Record<string, unknown>,
  h: AuditHasher,
  key?: { secretHash: string; policyVersion: number; tripwires?: readonly TripwireCheck[] | undefined },
): Promise<DenialResult> {
  const safe = storableDraft(draft, h);
  const payload = {
    key_id: safe.key_id,
    secret_hash: key?.secretHash ?? null,
    policy_version: key?.policyVersion ?? null,
    code: safeText(code, MAX_NAME_CHARS).text,
    details: safeJson(details, h, MAX_METADATA_BYTES).value,
    ...(key?.tripwires?.length ? { tripwires: key.tripwires } : {}),
    row: safe,
  };
  const { rows } = await sql<{
    r: DenialResult;
  }>`select leash_record_denial(${JSON.stringify(payload)}::jsonb) as r`.execute(db);
  const r = rows[0]?.r;
  if (!r) throw new Error('denial returned no row');
  return r;
}
