import type { ColumnType, Generated, JSONColumnType } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type Json = Record<string, unknown>;

export interface VendorCredentialsTable {
  vendor: string;
  name: string;
  source: 'env' | 'encrypted';
  env_var: string | null;
  ciphertext: Buffer | null;
  base_url: string | null;
  account: string | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface PoliciesTable {
  name: string;
  latest_version: number;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface PolicyVersionsTable {
  policy: string;
  version: number;
  document: JSONColumnType<Json, Json | string, Json | string>;
  digest: string;
  loop_limit: number | null;
  loop_window_seconds: number | null;
  created_at: Generated<Date>;
}

export interface VaultKeysTable {
  id: string;
  secret_hash: Buffer;
  agent: string;
  run_id: string | null;
  policy: string;
  policy_version: number | null;
  label: string | null;
  metadata: JSONColumnType<Record<string, string>, string, string>;
  created_at: Generated<Date>;
  expires_at: Date | null;
  revoked_at: Timestamp | null;
  revoked_reason: string | null;
  rotated_at: Timestamp | null;
}

export interface SpendWindowsTable {
  scope: string;
  kind: 'usd_day' | 'requests_hour';
  window_start: Date;
  spent_micros: Generated<number>;
  reserved_micros: Generated<number>;
  requests: Generated<number>;
  updated_at: Generated<Date>;
}

export type Decision = 'allowed' | 'denied' | 'held';
export type Outcome = 'pending' | 'succeeded' | 'failed' | 'unknown' | 'none';
export type CostStatus = 'none' | 'estimated' | 'pending' | 'settled';

export interface AuditLogTable {
  id: string;
  ts: Generated<Date>;
  key_id: string | null;
  agent: string | null;
  run_id: string | null;
  policy: string | null;
  policy_version: number | null;
  tool: string;
  vendor: string | null;
  operation: string | null;
  account: string | null;
  decision: Decision;
  reason: string | null;
  outcome: Outcome;
  reserved_micros: number;
  cost_micros: number;
  cost_status: CostStatus;
  amount: number | null;
  currency: string | null;
  vendor_request_id: string | null;
  /**
   * The object the call made (refund, message, email). Unique per vendor among calls that create objects (the
   * owner is claimed in audit_objects; reads, whose operation starts with `GET `, may share one): one object, one row.
   */
  vendor_object_id: string | null;
  http_status: number | null;
  error: string | null;
  request: JSONColumnType<Json, string, string> | null;
  args_hash: string | null;
  budget: JSONColumnType<BudgetWindow[], string, string>;
  sandbox: boolean;
  /** mcp | http: which front door the call came through. */
  door: Generated<string>;
  latency_ms: number | null;
  settled_at: Date | null;
  metadata: JSONColumnType<Json, string, string>;
  /** The USD value admitted (the reservation), never changed by settlement; indexed with tool and ts. */
  usd_micros: Generated<number>;
}

/** Admitted calls not yet settled (outcome pending/unknown, or a cost the vendor prices later). */
export interface AuditUnsettledTable {
  id: string;
  ts: Date;
}

/** One vendor object, one audit row: which row owns each object id a call created. */
export interface AuditObjectsTable {
  vendor: string;
  object_id: string;
  audit_id: string;
}

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'used' | 'cancelled';

/** A call held for a person: bound to one key and the digest of its exact arguments (see src/approvals). */
export interface ApprovalsTable {
  id: string;
  key_id: string;
  agent: string | null;
  run_id: string | null;
  policy: string | null;
  policy_version: number | null;
  tool: string;
  operation: string | null;
  door: Generated<string>;
  args_hash: string;
  request: JSONColumnType<Json, string, string> | null;
  usd_micros: Generated<number>;
  amount: number | null;
  currency: string | null;
  status: ApprovalStatus;
  created_at: Generated<Date>;
  expires_at: Date;
  decided_at: Date | null;
  decided_by: string | null;
  note: string | null;
  used_at: Date | null;
  used_by_audit_id: string | null;
  expired_at: Date | null;
  expiry_audit_id: string | null;
  held_audit_id: string;
  link_nonce_hash: Buffer | null;
  announced_at: Date | null;
  expiry_announced_at: Date | null;
  /** Closed without a decision (its key was revoked): when, and the refusal code that says why. */
  cancelled_at: Date | null;
  cancel_reason: string | null;
}

/** One window a call reserved in; recorded on its audit row so settlement finds it even across midnight. */
export interface BudgetWindow {
  scope: string;
  kind: 'usd_day' | 'requests_hour';
  window_start: string;
  cap: number;
}

export interface Database {
  vendor_credentials: VendorCredentialsTable;
  policies: PoliciesTable;
  policy_versions: PolicyVersionsTable;
  vault_keys: VaultKeysTable;
  spend_windows: SpendWindowsTable;
  audit_log: AuditLogTable;
  audit_unsettled: AuditUnsettledTable;
  audit_objects: AuditObjectsTable;
  approvals: ApprovalsTable;
}
