import { uuidv7 } from '../audit/uuid.js';
import { MAX_NAME_CHARS, safeText } from '../audit/sanitize.js';
import { recordDenial, type AuditDraft } from '../audit/write.js';
import type { CallRequest, CallState, Refusal, StageResult, ToolCallResult } from './call-state.js';
import { emit, type PipelineDeps } from './deps.js';
import { answer, call, settle } from './effect-stages.js';
import { errorName } from '../config/logger.js';
import { failure } from './failure.js';
import { admitStage, authenticate, evaluate, facts, validate } from './stages.js';
import { operationOf } from './tool.js';
import { tripwiresFor } from '../policy/tripwires.js';
import { raiseTripwires } from './tripwire-events.js';
import { decideShadow, shadowDisagreement } from './shadow-stage.js';

export { createPipeline, type PipelineDeps, type PipelineEvent } from './deps.js';
export type { CallRequest, ToolCallResult } from './call-state.js';
export { argsHash } from './stages.js';

/** The tool column and `tool` label of a call that names no tool or endpoint of the catalog. */
export const OTHER_TOOL = 'other';

/**
 * The one path every call takes, from either front door:
 * authenticate → validate → facts → evaluate → admit → call → settle → answer.
 * Each stage continues or refuses; a refusal is written to the audit log (or already was, by admission) and
 * answered from the refusal table. Fails closed: if the key, policy, budget or audit row cannot be decided or
 * written, the vendor is not called.
 */
export async function runCall(deps: PipelineDeps, req: CallRequest): Promise<ToolCallResult> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const s = newState(deps, req);
    // A retry (the key's policy moved on since it was cached) looks the key up afresh.
    const stop = await decide(s, deps, attempt > 0);
    if (stop === 'restart') continue;
    if (stop) {
      const refused = await refuse(s, deps, stop);
      if (refused === 'restart') continue;
      return finish(s, deps, refused);
    }
    emit(deps, {
      type: 'admitted',
      key_id: s.key!.id,
      agent: s.key!.agent,
      tool: s.name,
      audit_id: s.id,
      cost_micros: s.cost,
    });
    await call(s, deps);
    await settle(s, deps);
    return finish(s, deps, answer(s, deps));
  }
  return failure('audit_unavailable', null, 'the policy changed while the call was decided; call again');
}

/** Everything before the vendor: the first stage that refuses ends it. */
async function decide(s: CallState, deps: PipelineDeps, fresh: boolean): Promise<StageResult> {
  const stop =
    (await authenticate(s, deps, fresh)) ?? validate(s, deps) ?? (await facts(s, deps)) ?? evaluate(s, deps);
  // The policy's shadow version decides the call too, in process, deciding nothing.
  decideShadow(s, deps, stop);
  return stop ?? (await admitStage(s, deps));
}

/** Writes the denied row (re-checking the key in the same statement) and answers from the refusal table. */
async function refuse(s: CallState, deps: PipelineDeps, r: Refusal): Promise<ToolCallResult | 'restart'> {
  if (r.row === 'none') return failure(r.code, null, r.message, undefined, r.extra);
  let code = r.code;
  let details = r.details ?? {};
  if (r.row !== 'written') {
    try {
      const key = s.key
        ? {
            secretHash: s.key.secret_hash,
            policyVersion: s.key.policy.version,
            // The refusal counts toward the policy's denials_per_minute wires, in the same statement.
            tripwires: s.tool?.countsAsRequest === false ? [] : tripwiresFor(s.key.policy, s.key),
          }
        : undefined;
      const written = await recordDenial(deps.db, s.draft, code, details, deps.auditHash, key);
      if ('stale' in written) return 'restart';
      raiseTripwires(deps, s, written);
      if (written.code !== code) {
        if (s.req.key) deps.keys.forget(s.req.key);
        ({ code, details } = written);
      }
    } catch (error) {
      deps.log.error('audit write failed', { audit_id: s.id, error: errorName(error) });
      return failure('audit_unavailable', null);
    }
  }
  emit(deps, {
    type: 'denied',
    code,
    key_id: s.draft.key_id,
    agent: s.draft.agent,
    policy: s.draft.policy,
    tool: s.name,
    audit_id: s.id,
    details,
  });
  const keyFailed = code.startsWith('key_');
  const message = code === r.code ? r.message : undefined;
  // A caller with no valid key learns nothing, not even the audit id.
  return failure(
    code,
    code === 'key_invalid' ? null : s.id,
    message,
    keyFailed ? undefined : details,
    r.extra,
  );
}

function finish(s: CallState, deps: PipelineDeps, result: ToolCallResult): ToolCallResult {
  const ms = performance.now() - s.started;
  const decision = s.admission
    ? 'allowed'
    : !result.ok && result.failure.code === 'approval_required'
      ? 'held'
      : 'denied';
  const code = result.ok ? null : result.failure.code;
  const disagreement = shadowDisagreement(s, decision, code, s.shadowFinal);
  if (disagreement && s.shadow)
    emit(deps, {
      type: 'shadow',
      policy: s.shadow.policy.name,
      version: s.shadow.policy.version,
      tool: s.name,
      audit_id: s.id,
      disagreement,
    });
  emit(deps, {
    type: 'finished',
    tool: s.name,
    audit_id: result.ok ? result.audit_id : result.failure.audit_id,
    // A call waiting for a person is neither allowed nor refused: it is held, as its audit row says.
    decision,
    code,
    door: s.req.door,
    ms,
    admit_ms: s.admitMs ?? null,
    vendor_ms: s.vendorMs ?? null,
  });
  return result;
}

function newState(deps: PipelineDeps, req: CallRequest): CallState {
  const tool = operationOf(deps.catalog, req.tool, req.door);
  // Tool columns and metric labels take the catalog's closed set plus `other`; an unknown name or path goes to
  // the request (callers choose it, so it must not make a new series or tool value).
  const asked = tool ? undefined : safeText(req.tool, MAX_NAME_CHARS).text;
  const name = tool?.name ?? OTHER_TOOL;
  const id = uuidv7();
  const draft: AuditDraft = {
    id,
    key_id: null,
    agent: null,
    run_id: null,
    policy: null,
    policy_version: null,
    tool: name,
    vendor: tool?.vendor ?? null,
    operation: tool?.operation ?? null,
    account: null,
    request: asked === undefined ? null : { name: asked },
    args_hash: null,
    sandbox: deps.sandbox,
    door: req.door,
    amount: null,
    currency: null,
    // The caller's own idempotency key; authenticate adds the namespaced one the vendor sees (reconcile replays it).
    // An OAuth caller's token `sub`, `client_id` and `jti` (never the token) go in too.
    metadata: {
      ...deps.keys.callerMetadata(req.key),
      ...(req.idempotencyKey ? { agent_idempotency_key: req.idempotencyKey } : {}),
    },
  };
  const s: CallState = { req, id, started: performance.now(), name, draft, cost: 0 };
  if (tool) s.tool = tool;
  if (asked !== undefined) s.asked = asked;
  return s;
}

/** The MCP front door's entry point: one tool call by a presented vault key. */
export function runTool(
  deps: PipelineDeps,
  presentedKey: string | undefined,
  tool: string,
  args: unknown,
  signal?: AbortSignal,
): Promise<ToolCallResult> {
  return runCall(deps, { key: presentedKey, tool, args, door: 'mcp', signal });
}
