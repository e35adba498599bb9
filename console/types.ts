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

export interface ActiveKey {
  id: string;
  agent: string;
  run_id: string | null;
  policy: string;
  label: string | null;
  created_at: string;
  expires_at: string | null;
  held_micros: number;
  cap_micros: number | null;
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
  keys: ActiveKey[];
}

/** What a revoke names: exactly one of a key, an agent or a run. */
export type RevokeTarget = { key_id: string } | { agent: string } | { run_id: string };
