import { createHash } from 'node:crypto';
import type { AuditDraft, Admission } from '../audit/write.js';
import type { AuthenticatedKey } from '../keys/authenticate.js';
import type { CompiledPolicy, ToolRule } from '../policy/compile.js';
import type { ShadowRecord } from '../policy/shadow.js';
import type { ApprovalNeed, PolicyFacts } from '../policy/evaluate.js';
import type { VendorHandle } from './clients.js';
import type { ToolFailure, VendorError } from './errors.js';
import type { Effect, ToolDefinition } from './tool.js';
import type { VendorContext } from './vendor-context.js';

/** What a front door hands the pipeline: the presented key, the operation and its arguments, and where it came from. */
export interface CallRequest {
  key: string | undefined;
  /** The tool (or REST operation) name. */
  tool: string;
  args: unknown;
  door: 'mcp' | 'http';
  /** An idempotency key the caller chose (REST); otherwise one is derived from the audit id. */
  idempotencyKey?: string | undefined;
  /** What the door itself found wrong (a bad header, an unreadable or oversized body): validate refuses with these. */
  issues?: readonly { field: string; problem: string }[] | undefined;
  /** Aborted when the caller goes away (client disconnect, cancellation, server closing): waits end early. */
  signal?: AbortSignal | undefined;
}

/** Vendors take idempotency keys of at most 255 characters (Stripe). */
const MAX_VENDOR_IDEMPOTENCY_KEY = 255;

/**
 * The idempotency key the vendor gets for a caller's own: namespaced to the vault key, so two keys sharing one
 * credential never share (or replay) each other's requests; deterministic, so the caller's retries still dedupe.
 */
export function vendorIdempotencyKey(keyId: string, callerKey: string): string {
  const key = `leash_${keyId}_${callerKey}`;
  if (key.length <= MAX_VENDOR_IDEMPOTENCY_KEY) return key;
  return `leash_${keyId}_h${createHash('sha256').update(callerKey).digest('base64url')}`;
}

export type ToolCallResult =
  | {
      ok: true;
      output: Record<string, unknown>;
      audit_id: string;
      sandbox: boolean;
      remaining_micros: number | null;
    }
  | { ok: false; failure: ToolFailure };

/** One call as it moves through the stages; each stage fills in what it learned. */
export interface CallState {
  req: CallRequest;
  id: string;
  started: number;
  /** The tool's name as stored and labelled: a catalog name, or `other` when the caller named none. */
  name: string;
  /** What the caller asked for when it names no tool (sanitised and capped): kept in the audit row's request. */
  asked?: string;
  draft: AuditDraft;
  tool?: ToolDefinition;
  key?: AuthenticatedKey;
  rule?: ToolRule;
  input?: unknown;
  handle?: VendorHandle | undefined;
  vendor?: VendorContext;
  looked?: unknown;
  facts?: PolicyFacts;
  amountMicros?: number | undefined;
  /** Policy holds this call for a person (see src/approvals). */
  approval?: ApprovalNeed | undefined;
  cost: number;
  admission?: Admission;
  admitMs?: number;
  vendorMs?: number;
  effect?: Effect<unknown>;
  vendorError?: VendorError;
  internalError?: boolean;
  /** The policy's shadow version, how it decided the call in process, and the cost it would reserve. */
  shadow?: { policy: CompiledPolicy; record: ShadowRecord; cost: number };
  /** The shadow's decision as admission wrote it (its caps and wires measured too). */
  shadowFinal?: ShadowRecord;
}

/** A stage either continues (undefined) or stops the call with a refusal. */
export interface Refusal {
  code: string;
  /** A sentence for this case; the refusal table's default otherwise. */
  message?: string;
  details?: Record<string, unknown>;
  extra?: Partial<ToolFailure>;
  /** 'write': record a denied row (default); 'written': the row exists (SQL refused); 'none': cannot be written. */
  row?: 'write' | 'written' | 'none';
}

/** A stage may also ask for the call to start over once with a fresh key lookup (the policy moved on). */
export type StageResult = Refusal | 'restart' | undefined;
