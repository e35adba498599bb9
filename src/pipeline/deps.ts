import type { Config } from '../config/config.js';
import { errorName, type Logger } from '../config/logger.js';
import { DbClock } from '../db/clock.js';
import type { Db } from '../db/database.js';
import type { CredentialChanges } from '../credentials/credential-changes.js';
import { auditHasher, type AuditHasher } from '../audit/audit-hash.js';
import { AdmissionQueue } from '../audit/admission-queue.js';
import type { TripwireEvent } from '../audit/write.js';
import { ApprovalWaits } from '../approvals/wait.js';
import { SETTLE_DELAY_MS, SettleQueue } from '../audit/settle-queue.js';
import { KeyCache } from '../keys/key-cache.js';
import { ShadowPolicies } from '../policies/shadows.js';
import type { Disagreement } from '../policy/shadow.js';
import { VendorClients } from './clients.js';
import type { Catalog } from './tool.js';

/** Something an operator may want to hear about (alerts and metrics subscribe to these). */
export type PipelineEvent =
  | {
      type: 'denied';
      code: string;
      key_id: string | null;
      agent: string | null;
      /** The key's policy (null when no valid key was presented): refusals are counted per policy. */
      policy: string | null;
      tool: string;
      audit_id: string | null;
      details: Record<string, unknown>;
    }
  | { type: 'admitted'; key_id: string; agent: string; tool: string; audit_id: string; cost_micros: number }
  /**
   * A tripwire tripped (action pause or revoke: this call was refused tripwire_tripped) or alerts (action alert: once
   * per window per wire and scope, whichever replica saw it). One alert each.
   */
  | (TripwireEvent & { type: 'tripwire'; key_id: string; agent: string; tool: string; audit_id: string })
  /** The policy's shadow version would have decided the call otherwise (or could not decide it). */
  | {
      type: 'shadow';
      policy: string;
      version: number;
      tool: string;
      audit_id: string;
      disagreement: Disagreement | 'undecidable';
    }
  | {
      type: 'finished';
      tool: string;
      audit_id: string | null;
      decision: 'allowed' | 'denied' | 'held';
      code: string | null;
      door: string;
      ms: number;
      admit_ms: number | null;
      vendor_ms: number | null;
    };

export interface PipelineDeps {
  db: Db;
  config: Config;
  catalog: Catalog;
  sandbox: boolean;
  log: Logger;
  clients: VendorClients;
  /** Authenticated keys, re-checked in SQL at admission. */
  keys: KeyCache;
  /** Admits concurrent calls together (one round trip and one durable commit per batch). */
  admissions: AdmissionQueue;
  /** Settles off the answer path; flush it before reading settled rows or shutting down. */
  settler: SettleQueue;
  /** HMAC under the audit key for every hash the audit log keeps of agent arguments (same key on every replica). */
  auditHash: AuditHasher;
  /** The database's clock: which budget window a call counts in, the same on every replica. */
  clock: DbClock;
  /** `get_approval` calls waiting for a decision; close it before the pool. */
  approvalWaits: ApprovalWaits;
  /** The policies' shadow versions, held in memory (refreshed off the call path). */
  shadows?: ShadowPolicies;
  onEvent?: (event: PipelineEvent) => void;
}

/** Builds the pipeline's dependencies once per process. */
export function createPipeline(
  o: Omit<
    PipelineDeps,
    'clients' | 'keys' | 'admissions' | 'settler' | 'auditHash' | 'clock' | 'approvalWaits' | 'shadows'
  > & {
    vendorTimeoutMs?: number;
    settleDelayMs?: number;
    /** Stored credential changes, heard on every replica (the runtime's LISTEN session); without it clients live 30 s. */
    credentialChanges?: CredentialChanges;
  },
): PipelineDeps {
  const auditHash = auditHasher(o.config.auditKey);
  return {
    ...o,
    clients: new VendorClients(o.db, o.config, o.sandbox, o.vendorTimeoutMs ?? 20_000, o.credentialChanges),
    keys: new KeyCache(o.db),
    admissions: new AdmissionQueue(o.db, auditHash),
    settler: new SettleQueue(o.db, o.log, auditHash, o.settleDelayMs ?? SETTLE_DELAY_MS),
    auditHash,
    clock: new DbClock(o.db),
    approvalWaits: new ApprovalWaits(o.db),
    shadows: new ShadowPolicies(o.db, undefined, (error) =>
      o.log.error('could not read shadow policies; comparing with what was read before', {
        error: errorName(error),
      }),
    ),
  };
}

/** Tells subscribers; a subscriber's failure never affects a call. */
export function emit(deps: PipelineDeps, event: PipelineEvent): void {
  try {
    deps.onEvent?.(event);
  } catch {
    // Alerts and metrics must never affect a tool call.
  }
}
