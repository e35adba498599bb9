import { createHash } from 'node:crypto';
import { z } from 'zod';
import { usdToMicros } from './money.js';
import {
  durationSeconds,
  genericRuleShape,
  policyFileSchema,
  type PolicyFile,
  type ToolRuleInput,
} from './schema.js';
import { compileTripwires } from './tripwires.js';
import { PolicyFileError, type CompiledPolicy, type ToolRule, type ToolRuleSpec } from './types.js';

export { PolicyFileError } from './types.js';
export type { CompiledPolicy, ToolRule, ToolRuleSpec } from './types.js';

/** The tool an agent asks where its held call stands; allowed by any policy with an approval rule. */
export const APPROVAL_TOOL = 'get_approval';

/** Stable JSON (sorted keys) so equal documents have equal digests. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Keys a tool's rule may set: `credential`, the generic rules it takes, and its own. */
function ruleKeys(spec: ToolRuleSpec): string[] {
  return ['credential', 'approval', ...spec.rules, ...Object.keys(spec.own?.shape ?? {})];
}

/** Problems with one tool's rule, each naming its path (`at`: where the rule is written). */
function ruleProblems(
  tool: string,
  rule: ToolRuleInput | null,
  spec: ToolRuleSpec,
  at = `tools.${tool}`,
): string[] {
  const keys = ruleKeys(spec);
  const problems: string[] = [];
  for (const key of Object.keys(rule ?? {})) {
    if (!keys.includes(key)) {
      const takes = keys.filter((k) => k !== 'credential');
      problems.push(
        `✖ '${key}' does not apply to ${tool} (rules it takes: ${takes.join(', ') || 'none'})\n  → at ${at}.${key}`,
      );
    }
  }
  for (const key of spec.own?.requires ?? []) {
    if (rule?.[key] === undefined) problems.push(`✖ ${tool} requires '${key}'\n  → at ${at}.${key}`);
  }
  const shape: Record<string, z.ZodType> = {
    credential: genericRuleShape.credential,
    approval: genericRuleShape.approval,
    ...spec.own?.shape,
  };
  for (const key of spec.rules) shape[key] = genericRuleShape[key];
  const parsed = z.object(shape).safeParse(rule ?? {});
  for (const issue of parsed.success ? [] : parsed.error.issues) {
    problems.push(`✖ ${issue.message}\n  → at ${[at, ...issue.path.map(String)].join('.')}`);
  }
  // A tool whose calls carry no amount can only be held `always`.
  const approval = rule?.approval as { above_usd?: unknown } | undefined; // shape checked just above
  if (approval?.above_usd !== undefined && !spec.rules.includes('max_amount_usd'))
    problems.push(
      `✖ ${tool} moves no money, so approval.above_usd never applies; use approval: { always: true }\n  → at ${at}.approval.above_usd`,
    );
  return problems;
}

/** Validates a raw document (parsed YAML/JSON) against the schema and the tool catalog. Throws PolicyFileError. */
export function validatePolicy(raw: unknown, catalog: ReadonlyMap<string, ToolRuleSpec>): PolicyFile {
  const parsed = policyFileSchema.safeParse(raw);
  if (!parsed.success) throw new PolicyFileError(z.prettifyError(parsed.error));
  const doc = parsed.data;
  const problems: string[] = [];
  for (const [tool, rule] of Object.entries(doc.tools)) {
    const spec = catalog.get(tool);
    if (spec && !tool.includes(':')) problems.push(...ruleProblems(tool, rule, spec));
    else {
      const known = [...catalog.keys()].filter((k) => !k.includes(':'));
      problems.push(`✖ unknown tool '${tool}' (known: ${known.sort().join(', ')})\n  → at tools.${tool}`);
    }
  }
  for (const [vendor, endpoint, rule] of endpointRules(doc)) {
    const name = `${vendor}:${endpoint}`;
    const spec = catalog.get(name);
    const at = `vendors.${vendor}.http["${endpoint}"]`;
    if (spec?.vendor === vendor) problems.push(...ruleProblems(name, rule, spec, at));
    else {
      const known = [...catalog.keys()]
        .filter((k) => k.startsWith(`${vendor}:`))
        .map((k) => k.slice(vendor.length + 1));
      problems.push(
        `✖ unknown ${vendor} endpoint '${endpoint}' (leash governs: ${known.sort().join(', ') || 'none'})\n  → at ${at}`,
      );
    }
  }
  if (problems.length) throw new PolicyFileError(problems.join('\n'));
  return doc;
}

/** Each vendor's REST endpoints as written: vendor, `METHOD /path`, rule. */
function endpointRules(doc: PolicyFile): [string, string, ToolRuleInput | null][] {
  return Object.entries(doc.vendors).flatMap(([vendor, v]) =>
    Object.entries(v.http ?? {}).map(([endpoint, rule]): [string, string, ToolRuleInput | null] => [
      vendor,
      endpoint,
      rule,
    ]),
  );
}

/** Digest of a validated document; applying an unchanged document creates no new version. */
export function policyDigest(doc: PolicyFile): string {
  return createHash('sha256').update(canonicalJson(doc)).digest('hex');
}

const genericRules = z.object(genericRuleShape);

function compileRule(rule: ToolRuleInput | null): ToolRule {
  const source = rule ?? {};
  const out: ToolRule = { source };
  // Validated when the policy was applied; a stored rule that no longer parses is refused whole.
  const parsed = genericRules.safeParse(source);
  if (!parsed.success) throw new PolicyFileError('a stored tool rule no longer validates');
  const r = parsed.data;
  if (r.credential) out.credential = r.credential;
  if (r.max_amount_usd !== undefined) out.maxAmountMicros = usdToMicros(r.max_amount_usd);
  if (r.customers) out.customers = new Set(r.customers);
  if (r.approval) {
    out.approval = { expiresSeconds: durationSeconds(r.approval.expires) };
    if (r.approval.above_usd !== undefined) out.approval.aboveMicros = usdToMicros(r.approval.above_usd);
  }
  return out;
}

/** Compiles a validated document once per version; evaluation never re-parses. */
export function compilePolicy(doc: PolicyFile, version: number): CompiledPolicy {
  const limits: CompiledPolicy['limits'] = {};
  if (doc.limits.daily_usd !== undefined) limits.dailyMicros = usdToMicros(doc.limits.daily_usd);
  if (doc.limits.per_key_daily_usd !== undefined)
    limits.perKeyDailyMicros = usdToMicros(doc.limits.per_key_daily_usd);
  if (doc.limits.hourly_requests !== undefined) limits.hourlyRequests = doc.limits.hourly_requests;
  if (doc.limits.per_key_hourly_requests !== undefined)
    limits.perKeyHourlyRequests = doc.limits.per_key_hourly_requests;
  const vendors: Record<string, { credential: string; account?: string }> = {};
  for (const [vendor, v] of Object.entries(doc.vendors)) {
    vendors[vendor] = v.account
      ? { credential: v.credential, account: v.account }
      : { credential: v.credential };
  }
  // REST endpoints compile beside the tools, named `<vendor>:<METHOD> <path>` (a name no tool can have).
  const tools = new Map([
    ...Object.entries(doc.tools).map(([tool, rule]): [string, ToolRule] => [tool, compileRule(rule)]),
    ...endpointRules(doc).map(([vendor, endpoint, rule]): [string, ToolRule] => [
      `${vendor}:${endpoint}`,
      compileRule(rule),
    ]),
  ]);
  const approvals = [...tools.values()].some((r) => r.approval);
  // An agent whose calls may be held can always ask where they stand.
  if (approvals && !tools.has(APPROVAL_TOOL)) tools.set(APPROVAL_TOOL, { source: {} });
  const compiled: CompiledPolicy = {
    name: doc.name,
    version,
    digest: policyDigest(doc),
    limits,
    vendors,
    tools,
    tripwires: compileTripwires(doc.tripwires),
    approvals,
    document: doc,
  };
  if (doc.loop_guard) {
    compiled.loopGuard = {
      identicalCalls: doc.loop_guard.identical_calls,
      windowSeconds: durationSeconds(doc.loop_guard.window),
    };
  }
  return Object.freeze(compiled);
}
