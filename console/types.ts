// The JSON the console reads, as the server sends it: audit rows on the live stream (src/server/console/stream.ts,
// the operator columns of src/audit/query.ts) and the overview (Overview in src/server/console/api.ts, with dates as
// ISO strings). Declared again here because the browser build cannot import server modules (Node and Kysely types).

export type Decision = 'allowed' | 'denied' | 'held';
export type Outcome = 'pending' | 'succeeded' | 'failed' | 'unknown';
export type CostStatus = 'none' | 'estimated' | 'pending' | 'settled';

/** One audit row as a `row` or `settle` event carries it. */
export interface AuditRow {
  id: string;
  ts: string;
  agent: string | null;
  run_id: string | null;
  key_id: string | null;
  tool: string;
  decision: Decision;
  reason: string | null;
  outcome: Outcome;
  cost_micros: number;
  reserved_micros: number;
  cost_status: CostStatus;
  amount: number | null;
  currency: string | null;
  vendor_object_id: string | null;
  latency_ms: number | null;
  sandbox: boolean;
  policy: string | null;
  policy_version: number | null;
  /** Set on a replay: the earlier row that counts the vendor's object. */
  replay_of: string | null;
}

/** One group of today's spend (a policy, an agent or a key); `group` is null for calls without one. */
export interface SpendRow {
  group: string | null;
  requests: number;
  denied: number;
  cost_micros: number;
  reserved_micros: number;
  /** cost + reserved: money used (its wire name in leash spend --json and /admin/spend), not a held call. */
  held_micros: number;
  cap_micros: number | null;
}

export interface AgentSpend extends SpendRow {
  /** The policy whose daily cap the agent's spend counts against, when it used exactly one today. */
  policy: string | null;
}

export interface DaySpend {
  day: string;
  held_micros: number;
  cost_micros: number;
  reserved_micros: number;
  requests: number;
}

export interface Spend {
  policies: SpendRow[];
  agents: AgentSpend[];
  days: DaySpend[];
}

/** One active key in the agents view (AgentActivityRow in src/admin/agent-activity.ts, plus its spend today). */
export interface AgentRow {
  key_id: string;
  agent: string;
  run_id: string | null;
  policy: string;
  label: string | null;
  created_at: string;
  expires_at: string | null;
  /** Calls per minute over the window, oldest first; the last is the 60 s up to the overview's `now`. */
  per_minute: number[];
  calls: number;
  denied: number;
  last_call: string | null;
  key_held_micros: number | null;
  key_cap_micros: number | null;
  policy_held_micros: number | null;
  policy_cap_micros: number | null;
  spent_today_micros: number;
  /** The pause that stops the key's calls (on it, its run, its agent or its policy); null when none. */
  pause: Pause | null;
}

/** A pause as the server shows it (PauseView in src/admin/key-ops.ts). */
export interface Pause {
  scope_kind: PauseKind;
  scope: string;
  /** The tripwire that paused it; null when an operator did. */
  wire: string | null;
  policy: string | null;
  metric: string | null;
  figure: number | null;
  limit: number | null;
  window_seconds: number | null;
  reason: string | null;
  paused_at: string;
  paused_by: string;
}

export type PauseKind = 'key' | 'run' | 'agent' | 'policy';

/** What a resume names: exactly one of a key, a run, an agent or a policy. */
export type ResumeTarget = { key_id: string } | { run_id: string } | { agent: string } | { policy: string };

export interface Agents {
  window_minutes: number;
  /** Active keys in all; rows holds the busiest (at most 100). */
  active_keys: number;
  rows: AgentRow[];
}

export interface Approval {
  id: string;
  tool: string;
  operation: string | null;
  agent: string | null;
  run_id: string | null;
  key_id: string;
  policy: string | null;
  usd_micros: number;
  amount: number | null;
  currency: string | null;
  request: Record<string, unknown> | null;
  created_at: string;
  expires_at: string;
}

export interface UnknownOutcomes {
  count: number;
  older_than_seconds: number;
  oldest: string | null;
  audit_ids: string[];
}

export interface Overview {
  now: string;
  today: string;
  features: { approvals: boolean };
  approvals: Approval[];
  spend: Spend;
  unknown: UnknownOutcomes;
  agents: Agents;
}

/** One change an operator made (OperatorAction in src/audit/operator-actions.ts, as /console/api/actions sends it). */
export interface OperatorAction {
  id: string;
  ts: string;
  /** The operator's name, `admin` for the admin token, what the CLI was told, or `system`. */
  actor: string;
  /** The door: admin_api, console, cli, link or system. */
  via: string;
  /** key.revoke, approval.approve, policy.apply, … */
  action: string;
  /** `key:<id>`, `run:<id>`, `agent:<name>`, `approval:<id>`, `policy:<name>`, `credential:<vendor>/<name>`, … */
  target: string;
  /** Ids, versions, reasons and notes (never a secret). */
  detail: Record<string, unknown>;
}

/** What a revoke names: exactly one of a key, an agent or a run. */
export type RevokeTarget = { key_id: string } | { agent: string } | { run_id: string };
