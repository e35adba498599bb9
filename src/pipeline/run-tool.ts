import { createHash } from 'node:crypto';
import type { Config } from '../config/config.js';
import type { Logger } from '../config/logger.js';
import type { Db } from '../db/database.js';
import { uuidv7 } from '../audit/uuid.js';
import { admitCall, recordDenied, settleCall, type AuditDraft } from '../audit/write.js';
import { authenticate, type AuthenticatedKey, type AuthResult } from '../keys/authenticate.js';
import { budgetView } from '../ledger/budget.js';
import { windowsFor } from '../ledger/windows.js';
import { canonicalJson } from '../policy/compile.js';
import { evaluate } from '../policy/evaluate.js';
import { formatUsd } from '../policy/money.js';
import { VendorClients, type VendorHandle } from './clients.js';
import { scrub, VendorError, type ToolFailure } from './errors.js';
import type { CallContext, Catalog, Pricing, ToolDefinition } from './tool.js';

/** Something an operator may want to hear about (alerts subscribe to these). */
export type PipelineEvent =
  | {
      type: 'denied';
      code: string;
      key_id: string | null;
      agent: string | null;
      tool: string;
      audit_id: string | null;
      details: Record<string, unknown>;
    }
  | { type: 'admitted'; key_id: string; agent: string; tool: string; audit_id: string; cost_micros: number };

export interface PipelineDeps {
  db: Db;
  config: Config;
  catalog: Catalog;
  sandbox: boolean;
  log: Logger;
  clients: VendorClients;
  onEvent?: (event: PipelineEvent) => void;
}

/**
 * One authentication query's answer, made by the HTTP layer and reused: by tools/list always, and by a
 * tool call when `hash` is that call's arguments hash (the loop-guard count depends on it).
 */
export interface PreAuth {
  hash: string | null;
  result: AuthResult;
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

/** Builds the pipeline's dependencies once per process. */
export function createPipeline(
  o: Omit<PipelineDeps, 'clients'> & { vendorTimeoutMs?: number },
): PipelineDeps {
  return { ...o, clients: new VendorClients(o.db, o.config, o.sandbox, o.vendorTimeoutMs ?? 20_000) };
}

const fail = (
  code: string,
  message: string,
  audit_id: string | null,
  extra: Partial<ToolFailure> = {},
): ToolCallResult => ({
  ok: false,
  failure: { code, message, retryable: false, audit_id, ...extra },
});

const AUDIT_UNAVAILABLE = 'the audit log could not be written, so the call was not made; try again later';

export function argsHash(tool: string, args: unknown): string {
  return createHash('sha256')
    .update(tool)
    .update('\0')
    .update(canonicalJson(args))
    .digest('hex')
    .slice(0, 32);
}

function pricing(config: Config): Pricing {
  return {
    fxRates: config.fxRates,
    smsPriceMicros: config.smsPriceMicros,
    emailPriceMicros: config.emailPriceMicros,
  };
}

function denialMessage(code: string, details: Record<string, unknown>): string {
  switch (code) {
    case 'key_revoked':
      return 'this vault key has been revoked; stop and ask an operator';
    case 'key_expired':
      return 'this vault key has expired; stop and ask an operator for a new one';
    case 'key_unknown':
      return 'this vault key is not known';
    case 'budget_exceeded': {
      const remaining =
        typeof details.remaining_micros === 'number' ? formatUsd(details.remaining_micros) : 'nothing';
      const scope =
        typeof details.scope === 'string' && details.scope.startsWith('policy:') ? 'policy' : 'key';
      return `daily USD cap reached for this ${scope}: ${remaining} left today, this call needs ${formatUsd(Number(details.requested_micros ?? 0))}; retrying will not help until ${String(details.resets_at)}`;
    }
    case 'request_limit_exceeded':
      return `hourly request cap of ${String(details.cap_requests)} reached; retrying will not help until ${String(details.resets_at)}`;
    default:
      return `denied: ${code}`;
  }
}

/**
 * The one path every tool call takes: authenticate → validate → look up facts → evaluate → admit
 * (one durable transaction) → vendor call with an idempotency key → settle → small result.
 * Fails closed: if the key, policy, budget or audit cannot be decided or written, the vendor is not called.
 */
export async function runTool(
  deps: PipelineDeps,
  presentedKey: string | undefined,
  toolName: string,
  args: unknown,
  /** An authentication already made for this key and exactly these arguments (the HTTP layer's). */
  preAuth?: PreAuth,
): Promise<ToolCallResult> {
  const { db, catalog, log } = deps;
  const started = performance.now();
  const tool = catalog.tools.get(toolName);
  if (!tool) return fail('unknown_tool', `there is no tool named ${toolName}`, null);
  const hash = argsHash(toolName, args ?? {});

  let auth: AuthResult;
  try {
    auth = preAuth && preAuth.hash === hash ? preAuth.result : await authenticate(db, presentedKey, hash);
  } catch (error) {
    log.error('authentication query failed', { tool: toolName, error: errorName(error) });
    return fail('audit_unavailable', AUDIT_UNAVAILABLE, null);
  }
  const id = uuidv7();
  if (!auth.ok) {
    const draft = baseDraft(id, tool, null, deps.sandbox, hash, null);
    draft.key_id = auth.keyId;
    await recordDenied(db, draft, 'key_invalid', {}).catch((e: unknown) =>
      log.error('audit write failed', { audit_id: id, error: errorName(e) }),
    );
    emit(deps, {
      type: 'denied',
      code: 'key_invalid',
      key_id: auth.keyId,
      agent: null,
      tool: toolName,
      audit_id: id,
      details: {},
    });
    return fail('key_invalid', 'the vault key is missing, malformed or not recognised', null);
  }
  const key = auth.key;
  const policy = key.policy;
  const rule = policy.tools.get(toolName);
  const vendorConfig = tool.vendor ? policy.vendors[tool.vendor] : undefined;
  const draft = baseDraft(id, tool, key, deps.sandbox, hash, vendorConfig?.account ?? null);

  const emitDenied = (code: string, details: Record<string, unknown>) =>
    emit(deps, {
      type: 'denied',
      code,
      key_id: key.id,
      agent: key.agent,
      tool: toolName,
      audit_id: id,
      details,
    });

  const deny = async (
    code: string,
    message: string,
    details: Record<string, unknown>,
    extra: Partial<ToolFailure> = {},
  ) => {
    try {
      await recordDenied(db, draft, code, details);
    } catch (error) {
      log.error('audit write failed', { audit_id: id, error: errorName(error) });
      return fail('audit_unavailable', AUDIT_UNAVAILABLE, null);
    }
    emitDenied(code, details);
    return fail(code, message, id, { details, ...extra });
  };

  // Key state and tool permission come before input validation: a revoked key learns nothing more.
  const early = evaluate({
    tool: toolName,
    policy,
    key: { revokedAt: key.revoked_at, expiresAt: key.expires_at },
    now: new Date(),
    facts: {},
    recentIdenticalCalls: 0,
    fxRates: {},
  });
  if (
    !early.allow &&
    (early.code === 'key_revoked' || early.code === 'key_expired' || early.code === 'tool_not_allowed')
  ) {
    return deny(early.code, early.message, early.details);
  }
  if (!rule) return deny('tool_not_allowed', `policy '${policy.name}' does not allow ${toolName}`, {});

  // Validate against the tool's own schema: the narrowed one only advertises policy limits, which
  // evaluate() enforces below so that every over-limit call is a denial with its code in the audit log.
  const parsed = tool.input.safeParse(args ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({
      field: i.path.join('.') || '(input)',
      problem: i.message,
    }));
    const summary = issues.map((i) => `${i.field}: ${i.problem}`).join('; ');
    return fail('invalid_input', `invalid input for ${toolName}: ${summary}`, null, { details: { issues } });
  }
  const input: unknown = parsed.data;
  draft.request = tool.redact ? tool.redact(input) : (input as Record<string, unknown>);

  let handle: VendorHandle | undefined;
  if (tool.vendor) {
    const spec = catalog.vendors.get(tool.vendor);
    if (!spec) return fail('internal_error', `internal error; audit id ${id}`, id);
    try {
      handle = await deps.clients.get(
        spec,
        rule.credential ?? vendorConfig?.credential ?? 'default',
        vendorConfig?.account,
      );
    } catch (error) {
      log.error('vendor credential unavailable', {
        audit_id: id,
        vendor: tool.vendor,
        error: scrub(errorMessage(error)),
      });
      return deny(
        'credential_unavailable',
        `leash has no usable ${tool.vendor} credential for this policy; ask an operator`,
        { vendor: tool.vendor },
      );
    }
  }
  const lookupCtx = { client: handle?.client, rule, account: handle?.account, sandbox: deps.sandbox };

  let looked: unknown;
  if (tool.lookup) {
    try {
      looked = await tool.lookup(lookupCtx, input);
    } catch (error) {
      if (error instanceof VendorError) {
        return deny(
          'facts_unavailable',
          `could not look up what this call touches: ${scrub(error.message, handle?.secrets)}`,
          { vendor_kind: error.kind, status: error.status ?? null },
          {
            retryable: error.retryable,
            vendor: vendorInfo(error),
          },
        );
      }
      log.error('fact lookup failed', { audit_id: id, error: errorName(error) });
      return deny('facts_unavailable', 'could not look up what this call touches', {});
    }
  }

  const facts = tool.facts(input, looked);
  if (facts.amount) {
    draft.amount = facts.amount.minor;
    draft.currency = facts.amount.currency.toLowerCase();
  }
  const decision = evaluate({
    tool: toolName,
    policy,
    key: { revokedAt: key.revoked_at, expiresAt: key.expires_at },
    now: new Date(),
    facts,
    recentIdenticalCalls: key.recentIdenticalCalls,
    fxRates: deps.config.fxRates,
  });
  if (!decision.allow) return deny(decision.code, decision.message, decision.details);

  const cost = tool.estimateCostMicros(input, looked, pricing(deps.config), decision.amountMicros);
  const windows = windowsFor(policy, key.id, new Date(), tool.countsAsRequest !== false);
  let admission;
  try {
    admission = await admitCall(db, key.id, cost, windows, draft);
  } catch (error) {
    log.error('admission failed', { audit_id: id, error: errorName(error) });
    return fail('audit_unavailable', AUDIT_UNAVAILABLE, null);
  }
  if (!admission.admitted) {
    const code = admission.code ?? 'denied';
    emitDenied(code, admission.details);
    return fail(code, denialMessage(code, admission.details), id, { details: admission.details });
  }
  emit(deps, {
    type: 'admitted',
    key_id: key.id,
    agent: key.agent,
    tool: toolName,
    audit_id: id,
    cost_micros: cost,
  });

  const ctx: CallContext<unknown> = {
    ...lookupCtx,
    idempotencyKey: `leash_${id}`,
    pricing: pricing(deps.config),
    budget: () => budgetView(db, key, policy),
  };
  const callStarted = performance.now();
  try {
    const effect = await tool.call(ctx, input, looked);
    const latency = Math.round(performance.now() - callStarted);
    await settleCall(db, id, 'succeeded', effect.costMicros, effect.costStatus, {
      vendor_object_id: effect.vendorObjectId,
      vendor_request_id: effect.vendorRequestId,
      http_status: effect.httpStatus,
      amount: effect.amount?.minor,
      currency: effect.amount?.currency.toLowerCase(),
      latency_ms: latency,
    }).catch((e: unknown) =>
      log.error('settle failed; reconcile will settle it', { audit_id: id, error: errorName(e) }),
    );
    const remaining =
      admission.remaining_micros === null ? null : admission.remaining_micros + (cost - effect.costMicros);
    log.debug('tool call', { audit_id: id, tool: toolName, ms: Math.round(performance.now() - started) });
    return {
      ok: true,
      output: effect.output as Record<string, unknown>,
      audit_id: id,
      sandbox: deps.sandbox,
      remaining_micros: remaining,
    };
  } catch (error) {
    const latency = Math.round(performance.now() - callStarted);
    if (error instanceof VendorError) {
      const message = scrub(error.message, handle?.secrets);
      const outcome = error.definite ? 'failed' : 'unknown';
      await settleCall(db, id, outcome, 0, 'settled', {
        error: `${error.kind}: ${message}`,
        http_status: error.status,
        vendor_request_id: error.requestId,
        latency_ms: latency,
      }).catch((e: unknown) =>
        log.error('settle failed; reconcile will settle it', { audit_id: id, error: errorName(e) }),
      );
      const what =
        outcome === 'unknown'
          ? 'the outcome is unknown and will be reconciled; do not repeat this call'
          : 'nothing was done';
      return fail(
        `vendor_${error.kind}`,
        `${tool.vendor ?? 'vendor'} ${error.kind === 'rejected' ? 'rejected the call' : `error (${error.kind})`}: ${message}; ${what}`,
        id,
        {
          retryable: error.definite && error.retryable,
          vendor: vendorInfo(error),
        },
      );
    }
    log.error('tool call failed', { audit_id: id, tool: toolName, error: errorName(error) });
    await settleCall(db, id, 'unknown', 0, 'settled', { error: 'internal error', latency_ms: latency }).catch(
      () => undefined,
    );
    return fail('internal_error', `internal error; audit id ${id}`, id);
  }
}

function baseDraft(
  id: string,
  tool: ToolDefinition,
  key: AuthenticatedKey | null,
  sandbox: boolean,
  hash: string,
  account: string | null,
): AuditDraft {
  return {
    id,
    key_id: key?.id ?? null,
    agent: key?.agent ?? null,
    run_id: key?.run_id ?? null,
    policy: key?.policy.name ?? null,
    policy_version: key?.policy.version ?? null,
    tool: tool.name,
    vendor: tool.vendor ?? null,
    operation: tool.operation,
    account,
    request: null,
    args_hash: hash,
    sandbox,
    amount: null,
    currency: null,
    metadata: {},
  };
}

function vendorInfo(e: VendorError): NonNullable<ToolFailure['vendor']> {
  const v: NonNullable<ToolFailure['vendor']> = { name: e.vendor, kind: e.kind };
  if (e.status !== undefined) v.status = e.status;
  if (e.requestId) v.request_id = e.requestId;
  if (e.vendorCode) v.code = e.vendorCode;
  return v;
}

function emit(deps: PipelineDeps, event: PipelineEvent): void {
  try {
    deps.onEvent?.(event);
  } catch {
    // Alerts must never affect a tool call.
  }
}

function errorName(error: unknown): string {
  if (error instanceof Error)
    return `${error.name}${(error as { code?: string }).code ? ` ${(error as { code?: string }).code}` : ''}`;
  return 'unknown';
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : 'unknown';
}
