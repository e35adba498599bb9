import { windowsFor } from '../ledger/windows.js';
import { decideCall } from '../policy/decide-call.js';
import { canonicalJson } from '../policy/compile.js';
import type { AuditHasher } from '../audit/audit-hash.js';
import { approvalView } from '../approvals/view.js';
import { vendorIdempotencyKey, type CallState, type StageResult } from './call-state.js';
import type { PipelineDeps } from './deps.js';
import { PolicyDenied, scrub, scrubVendorError, VendorError } from './errors.js';
import { invalidInputMessage, parseInput, pricingFrom, withoutNulls } from './tool.js';
import { vendorContext } from './vendor-context.js';
import { errorName } from '../config/logger.js';
import { vendorInfo } from './failure.js';
import { recipientsOf, tripwiresFor } from '../policy/tripwires.js';
import { raiseTripwires } from './tripwire-events.js';
import { shadowAdmission, shadowTripwires } from './shadow-stage.js';

/** Nesting deeper than this is refused before anything walks it (hashing, validation, storage). */
const MAX_DEPTH = 32;

/**
 * How far back an identical call with an unknown outcome makes a new one `outcome_pending`: a day, as long as
 * Stripe keeps an idempotency key (and reconcile, run every minute by `leash serve`, settles most within minutes).
 */
export const OUTCOME_PENDING_SECONDS = 86_400;

/** Key → key row and policy (cached; SQL re-checks at admission). Unknown, revoked or expired → refused. */
export async function authenticate(s: CallState, deps: PipelineDeps, fresh: boolean): Promise<StageResult> {
  let auth;
  try {
    auth = await deps.keys.identify(s.req.key, fresh);
  } catch (error) {
    deps.log.error('authentication query failed', { tool: s.name, error: errorName(error) });
    return { code: 'audit_unavailable', row: 'none' };
  }
  if (!auth.ok) {
    s.draft.key_id = auth.keyId;
    return { code: 'key_invalid' };
  }
  const key = auth.key;
  s.key = key;
  Object.assign(s.draft, {
    key_id: key.id,
    agent: key.agent,
    run_id: key.run_id,
    policy: key.policy.name,
    policy_version: key.policy.version,
  });
  // The caller's key, namespaced to this vault key as the vendor gets it; reconcile replays with exactly that.
  if (s.req.idempotencyKey)
    s.draft.metadata = {
      ...s.draft.metadata,
      idempotency_key: vendorIdempotencyKey(key.id, s.req.idempotencyKey),
      agent_idempotency_key: s.req.idempotencyKey,
    };
  if (key.revoked_at) return { code: 'key_revoked', details: { revoked_at: key.revoked_at } };
  if (key.expires_at && key.expires_at.getTime() <= Date.now())
    return { code: 'key_expired', details: { expired_at: key.expires_at } };
  return undefined;
}

/** The tool exists, the policy allows it, and the arguments parse with its schema (null means omitted). */
export function validate(s: CallState, deps: PipelineDeps): StageResult {
  const policy = s.key!.policy; // authenticate ran
  const args = withoutNulls(s.req.args ?? {});
  if (depth(args) > MAX_DEPTH) {
    s.draft.request = { _truncated: true, reason: `nested deeper than ${MAX_DEPTH} levels` };
    return { code: 'invalid_input', message: `arguments are nested deeper than ${MAX_DEPTH} levels` };
  }
  const h = deps.auditHash;
  // REST: default deny — a path no endpoint declares, or one the policy does not list, is refused alike.
  const rest = s.req.door === 'http';
  s.draft.args_hash = argsHash(s.asked ?? s.name, rest ? withoutHeaders(args) : args, h);
  if (!s.tool) {
    const asked = s.asked ?? s.name;
    s.draft.request = { name: asked, arguments: requestOf(args) };
    if (rest) return { code: 'endpoint_not_allowed', message: `leash does not allow ${asked}` };
    return { code: 'unknown_tool', message: `there is no tool named ${asked}` };
  }
  const rule = policy.tools.get(s.tool.name);
  if (!rule && rest) {
    const parsed = s.tool.input.safeParse(args);
    s.draft.request =
      parsed.success && s.tool.redact ? s.tool.redact(parsed.data, h) : rawRequest(s, args, h);
    return { code: 'endpoint_not_allowed', message: `policy '${policy.name}' does not allow ${s.name}` };
  }
  if (!rule) {
    return {
      code: 'tool_not_allowed',
      message: `policy '${policy.name}' does not allow ${s.tool.name}`,
      details: { allowed_tools: [...policy.tools.keys()] },
    };
  }
  s.rule = rule;
  const vendorConfig = s.tool.vendor ? policy.vendors[s.tool.vendor] : undefined;
  s.draft.account = vendorConfig?.account ?? null;
  // The tool's own schema: the narrowed one only advertises policy limits, which evaluate() enforces
  // so that every over-limit call is a denial with its code in the audit log.
  // A door's own finding (a bad header, an unreadable or oversized body) is the call's only issue.
  const parsed = s.req.issues?.length
    ? { ok: false as const, issues: s.req.issues }
    : parseInput(s.tool, args);
  if (!parsed.ok) {
    s.draft.request = rawRequest(s, args, h);
    return {
      code: 'invalid_input',
      message: invalidInputMessage(s.tool.name, parsed.issues),
      details: { issues: parsed.issues },
    };
  }
  s.input = parsed.input;
  s.draft.request = s.tool.redact ? s.tool.redact(parsed.input, h) : requestOf(parsed.input);
  return undefined;
}

/** The vendor client for this policy, and the read-only lookups the policy needs. Failures deny. */
export async function facts(s: CallState, deps: PipelineDeps): Promise<StageResult> {
  const tool = s.tool!;
  try {
    s.vendor = await vendorContext(deps, tool, s.key!.policy);
    s.handle = s.vendor.handle;
  } catch (error) {
    deps.log.error('vendor credential unavailable', {
      audit_id: s.id,
      vendor: tool.vendor ?? null,
      error: scrub(error instanceof Error ? error.message : 'unknown'),
    });
    return {
      code: 'credential_unavailable',
      message: `leash has no usable ${tool.vendor ?? 'vendor'} credential for this policy; ask an operator`,
      details: { vendor: tool.vendor ?? null },
    };
  }
  if (tool.lookup) {
    try {
      const key = s.key!;
      const ctx = { ...s.vendor.lookupCtx, approval: (id: string) => approvalView(deps.db, key.id, id) };
      s.looked = await tool.lookup(ctx, s.input);
    } catch (error) {
      // The lookup itself says no (get_approval: no such request of this key): a refusal from the table.
      if (error instanceof PolicyDenied)
        return { code: error.code, message: error.message, details: error.details };
      if (!(error instanceof VendorError)) {
        deps.log.error('fact lookup failed', { audit_id: s.id, error: errorName(error) });
        return { code: 'facts_unavailable' };
      }
      const e = scrubVendorError(error, s.handle?.secrets);
      return {
        code: 'facts_unavailable',
        message: `could not look up what this call touches: ${e.message}`,
        details: {
          vendor_kind: e.kind,
          status: e.status ?? null,
          ...(e.retryAfterSeconds !== undefined ? { retry_after_seconds: e.retryAfterSeconds } : {}),
        },
        extra: { retryable: e.retryable, vendor: vendorInfo(e) },
      };
    }
  }
  return undefined;
}

/**
 * The policy decides, once, on the call's facts, and the call is priced: decideCall, which `leash policies test`
 * runs too. Pure.
 */
export function evaluate(s: CallState, deps: PipelineDeps): StageResult {
  const key = s.key!;
  const { facts, decision, costMicros } = decideCall({
    tool: s.tool!,
    input: s.input,
    looked: s.looked,
    policy: key.policy,
    key: { revokedAt: key.revoked_at, expiresAt: key.expires_at },
    now: new Date(),
    pricing: pricingFrom(deps.config),
  });
  s.facts = facts;
  // What policy decided on, so `leash policies replay` can decide the same row under another policy.
  s.draft.metadata.facts = facts;
  if (facts.amount) {
    s.draft.amount = facts.amount.minor;
    s.draft.currency = facts.amount.currency.toLowerCase();
  }
  if (!decision.allow) return { code: decision.code, message: decision.message, details: decision.details };
  s.amountMicros = decision.amountMicros;
  s.approval = decision.approval;
  s.cost = costMicros;
  return undefined;
}

/** One durable round trip: key re-check, loop guard, reservations and the audit row. */
export async function admitStage(s: CallState, deps: PipelineDeps): Promise<StageResult> {
  const key = s.key!;
  const tool = s.tool!;
  const guard = key.policy.loopGuard;
  const readOnly = tool.annotations.readOnlyHint === true;
  const t0 = performance.now();
  let result;
  try {
    result = await deps.admissions.admit(
      {
        keyId: key.id,
        secretHash: key.secret_hash,
        policyVersion: key.policy.version,
        cost: s.cost,
        windows: windowsFor(key.policy, key.id, deps.clock.now(), tool.countsAsRequest !== false),
        // Polling (get_budget, get_approval, get_payment) is not a loop with an effect: reads are never
        // loop-guarded; those that count as requests still meet the hourly request cap.
        loop: guard && !readOnly ? { limit: guard.identicalCalls, seconds: guard.windowSeconds } : null,
        approval: s.approval && { expiresSeconds: s.approval.expiresSeconds, usdMicros: s.amountMicros ?? 0 },
        // The same logical call while an identical one's outcome is unknown: refused (or, with the same key at a
        // vendor that dedupes by key, sent on), decided in the admission statement.
        pending: readOnly ? null : { seconds: OUTCOME_PENDING_SECONDS, sameKey: tool.dedupesByKey === true },
        // Measured in the same statement; calls that do not use up the request cap (budget lookups) are not counted.
        tripwires:
          tool.countsAsRequest === false ? [] : [...tripwiresFor(key.policy, key), ...shadowTripwires(s)],
        // The shadow's caps, measured from the same figures (nothing reserved for it).
        shadow: shadowAdmission(s, deps),
        recipients: recipientsOf(s.facts),
        // leash's own lookups (get_budget, get_approval) are served on a paused key: get_budget tells the agent why it
        // is paused and that only an operator resumes it.
        pauseExempt: tool.vendor === undefined && tool.countsAsRequest === false,
      },
      s.draft,
    );
  } catch (error) {
    deps.log.error('admission failed', { audit_id: s.id, error: errorName(error), ...leashRefusal(error) });
    return { code: 'audit_unavailable', row: 'none' };
  }
  s.admitMs = performance.now() - t0;
  if ('stale' in result) return 'restart';
  if (result.shadow) s.shadowFinal = result.shadow;
  raiseTripwires(deps, s, result);
  // A held call (approval_required) is refused like any other: its row and approval request are written.
  if (!result.admitted) return { code: result.code ?? 'denied', details: result.details, row: 'written' };
  s.admission = result;
  return undefined;
}

/**
 * The loop guard's (and approvals') identity of a call: the audit hash of tool and canonical arguments, cut to 32
 * hex characters. Keyed, yet the same on every replica that holds the same audit key.
 */
export function argsHash(tool: string, args: unknown, h: AuditHasher): string {
  return h.hash(`${tool}\0${canonicalJson(args)}`).slice(0, 32);
}

/**
 * A REST call's arguments without the headers the door forwards (an API version): they change how the vendor
 * answers, not what it does, so a retry sent without them is still the same call (loop guard, outcome_pending).
 */
function withoutHeaders(args: unknown): unknown {
  if (typeof args !== 'object' || args === null || Array.isArray(args) || !('headers' in args)) return args;
  const { headers: _forwarded, ...rest } = args;
  return rest;
}

function requestOf(args: unknown): Record<string, unknown> {
  return typeof args === 'object' && args !== null && !Array.isArray(args)
    ? (args as Record<string, unknown>)
    : { _value: args ?? null };
}

/** Arguments that did not parse, as stored: sensitive fields hashed, and the audit hash of all of them kept. */
function rawRequest(s: CallState, args: unknown, h: AuditHasher): Record<string, unknown> {
  s.draft.metadata.args_sha256 = h.hash(canonicalJson(args));
  return withoutSensitive(requestOf(args), h, s.tool?.sensitive);
}

/** Sensitive fields as their length and audit hash only (an invalid call's arguments are kept for forensics). */
function withoutSensitive(
  request: Record<string, unknown>,
  h: AuditHasher,
  fields: readonly string[] = [],
): Record<string, unknown> {
  const out = { ...request };
  for (const f of fields) {
    const v = out[f];
    if (v === undefined) continue;
    const text = typeof v === 'string' ? v : (JSON.stringify(v) ?? '');
    out[f] = { redacted: true, length: text.length, sha256: h.hash(text) };
  }
  return out;
}

/** Depth of nested arrays/objects, without recursion (so hostile nesting cannot overflow the stack). */
function depth(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (d > max) max = d;
    if (max > MAX_DEPTH) return max;
    if (typeof v === 'object' && v !== null) for (const c of Object.values(v)) stack.push([c, d + 1]);
  }
  return max;
}

/**
 * The message of an exception leash's own SQL raised about its setup (fixed text, no data of the call), so the log
 * says what to fix: "leash admission needs read committed transactions, not repeatable read", say.
 */
function leashRefusal(error: unknown): { reason?: string } {
  if (!(error instanceof Error) || (error as { code?: unknown }).code !== 'P0001') return {};
  return error.message.startsWith('leash ') ? { reason: error.message.slice(0, 200) } : {};
}
