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
  /** Who set it last (operator_actions has every change). */
  updated_by: string | null;
}

export interface PoliciesTable {
  name: string;
  latest_version: number;
  /** A version decided beside the enforced one on every call, deciding nothing (`policies apply --shadow`). */
  shadow_version: Generated<number | null>;
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
  applied_by: string | null;
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
  revoked_by: string | null;
  rotated_by: string | null;
  /** An OAuth binding's identity (null on a vault key): the token's issuer, `sub` and, optionally, `client_id`. */
  oauth_issuer: Generated<string | null>;
  oauth_subject: Generated<string | null>;
  oauth_client: Generated<string | null>;
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

/** A person's credential for the admin API and the console (`leash operators add`): only its hash is kept. */
export interface OperatorsTable {
  id: string;
  name: string;
  token_hash: Buffer;
  created_at: Generated<Date>;
  created_by: string;
  removed_at: Timestamp | null;
  removed_by: string | null;
}

/** One change an operator made, written in the change's own transaction (src/audit/operator-actions.ts). */
export interface OperatorActionsTable {
  id: Generated<string>;
  ts: Generated<Date>;
  actor: string;
  via: string;
  action: string;
  target: string;
  detail: JSONColumnType<Json, string, string>;
}

/** A paused scope: every call of the key, run, agent or policy is refused `key_paused` until it is resumed. */
export interface PausesTable {
  id: Generated<number>;
  scope_kind: 'key' | 'run' | 'agent' | 'policy';
  scope: string;
  /** The tripwire that paused it (null: an operator did) and that wire's policy. */
  wire: string | null;
  policy: string | null;
  details: JSONColumnType<Json, string, string>;
  paused_at: Generated<Date>;
  paused_by: string;
  resumed_at: Timestamp | null;
  resumed_by: string | null;
}

/** One call of a scope a tripwire measures: the scope's running totals before it, and what it added. */
export interface TripwireMarksTable {
  scope: string;
  seq: number;
  ts: Date;
  calls: number;
  usd_micros: number;
  denials: number;
  add_calls: number;
  add_usd: number;
  add_denials: number;
}

/** When a scope last reached each recipient (distinct_recipients_per_hour). */
export interface TripwireRecipientsTable {
  scope: string;
  recipient: string;
  last_at: Date;
}

/** When a wire last alerted for a scope: `alert` and `warn` alert once per window. */
export interface TripwireAlertsTable {
  policy: string;
  wire: string;
  scope: string;
  alerted_at: Date;
  figure: number;
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
  pauses: PausesTable;
  tripwire_marks: TripwireMarksTable;
  tripwire_recipients: TripwireRecipientsTable;
  tripwire_alerts: TripwireAlertsTable;
  operators: OperatorsTable;
  operator_actions: OperatorActionsTable;
}
