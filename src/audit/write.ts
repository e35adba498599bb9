import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { BudgetWindow } from '../db/schema.js';

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
  amount: number | null;
  currency: string | null;
  metadata: Record<string, unknown>;
}

export interface Admission {
  admitted: boolean;
  code: string | null;
  details: Record<string, unknown>;
  remaining_micros: number | null;
}

/** Writes a denied row (policy said no before any budget was touched). */
export async function recordDenied(
  db: Db,
  draft: AuditDraft,
  code: string,
  details: Record<string, unknown>,
): Promise<void> {
  await db
    .insertInto('audit_log')
    .values({
      ...draft,
      request: draft.request ? JSON.stringify(draft.request) : null,
      metadata: JSON.stringify({ ...draft.metadata, denial: details }),
      budget: '[]',
      decision: 'denied',
      reason: code,
      outcome: 'none',
      reserved_micros: 0,
      cost_micros: 0,
      cost_status: 'none',
    })
    .execute();
}

/**
 * Admission in one statement and one durable commit: re-check the key, reserve `cost` in every window,
 * count the request and insert the audit row. If this throws, the vendor must not be called.
 */
export async function admitCall(
  db: Db,
  keyId: string,
  cost: number,
  windows: BudgetWindow[],
  draft: AuditDraft,
): Promise<Admission> {
  const { rows } = await sql<{
    r: Admission;
  }>`select leash_admit(${keyId}, ${cost}::bigint, ${JSON.stringify(windows)}::jsonb, ${JSON.stringify(draft)}::jsonb) as r`.execute(
    db,
  );
  const r = rows[0]?.r;
  if (!r) throw new Error('admission returned no row');
  return r;
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
}

/** Settles an admitted call (asynchronous commit: a lost settle is recovered by reconcile). Idempotent. */
export async function settleCall(
  db: Db,
  id: string,
  outcome: 'succeeded' | 'failed' | 'unknown',
  costMicros: number,
  costStatus: 'settled' | 'pending',
  patch: SettlePatch,
): Promise<Settlement> {
  const { rows } = await sql<{
    r: Settlement;
  }>`select leash_settle(${id}::uuid, ${outcome}, ${costMicros}::bigint, ${costStatus}, ${JSON.stringify(patch)}::jsonb) as r`.execute(
    db,
  );
  return rows[0]?.r ?? { settled: false, reason: 'no_row' };
}
