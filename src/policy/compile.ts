import { createHash } from 'node:crypto';
import { z } from 'zod';
import { usdToMicros } from './money.js';
import {
  durationSeconds,
  policyFileSchema,
  type PolicyFile,
  type RuleName,
  type ToolRuleInput,
} from './schema.js';

/** A policy document that cannot be applied; the message names the path and what was expected. */
export class PolicyFileError extends Error {
  override name = 'PolicyFileError';
}

/** What the policy compiler needs to know about each tool in the catalog. */
export interface ToolRuleSpec {
  vendor?: string;
  /** Rules this tool understands. */
  rules: readonly RuleName[];
  /** Rules a policy must set to enable this tool (e.g. a pinned sender). */
  requires?: readonly RuleName[];
  /** Tool-specific checks of a rule's values; each string is one problem. */
  validate?: (rule: ToolRuleInput) => string[];
}

/** One tool's rules, normalised for evaluation. */
export interface ToolRule {
  credential?: string;
  maxAmountMicros?: number;
  customers?: ReadonlySet<string>;
  from?: string;
  toPrefixes?: readonly string[];
  toNumbers?: ReadonlySet<string>;
  toDomains?: readonly string[];
  toAddresses?: ReadonlySet<string>;
  maxRecipients?: number;
  maxSegments?: number;
  /** The rule as written, for narrowing schemas and describing limits. */
  source: ToolRuleInput;
}

export interface CompiledPolicy {
  name: string;
  version: number;
  digest: string;
  limits: {
    dailyMicros?: number;
    perKeyDailyMicros?: number;
    hourlyRequests?: number;
    perKeyHourlyRequests?: number;
  };
  vendors: Readonly<Record<string, { credential: string; account?: string }>>;
  tools: ReadonlyMap<string, ToolRule>;
  loopGuard?: { identicalCalls: number; windowSeconds: number };
  document: PolicyFile;
}

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

/** Validates a raw document (parsed YAML/JSON) against the schema and the tool catalog. Throws PolicyFileError. */
export function validatePolicy(raw: unknown, catalog: ReadonlyMap<string, ToolRuleSpec>): PolicyFile {
  const parsed = policyFileSchema.safeParse(raw);
  if (!parsed.success) throw new PolicyFileError(z.prettifyError(parsed.error));
  const doc = parsed.data;
  const problems: string[] = [];
  for (const [tool, rule] of Object.entries(doc.tools)) {
    const spec = catalog.get(tool);
    if (!spec) {
      problems.push(
        `✖ unknown tool '${tool}' (known: ${[...catalog.keys()].sort().join(', ')})\n  → at tools.${tool}`,
      );
      continue;
    }
    for (const key of Object.keys(rule ?? {}) as RuleName[]) {
      if (key !== 'credential' && !spec.rules.includes(key)) {
        problems.push(
          `✖ '${key}' does not apply to ${tool} (rules it takes: ${spec.rules.join(', ') || 'none'})\n  → at tools.${tool}.${key}`,
        );
      }
    }
    for (const key of spec.requires ?? []) {
      if (rule?.[key] === undefined)
        problems.push(`✖ ${tool} requires '${key}'\n  → at tools.${tool}.${key}`);
    }
    for (const problem of rule && spec.validate ? spec.validate(rule) : []) {
      problems.push(`✖ ${problem}\n  → at tools.${tool}`);
    }
  }
  if (problems.length) throw new PolicyFileError(problems.join('\n'));
  return doc;
}

/** Digest of a validated document; applying an unchanged document creates no new version. */
export function policyDigest(doc: PolicyFile): string {
  return createHash('sha256').update(canonicalJson(doc)).digest('hex');
}

function compileRule(rule: ToolRuleInput | null): ToolRule {
  const r = rule ?? {};
  const out: ToolRule = { source: r };
  if (r.credential) out.credential = r.credential;
  if (r.max_amount_usd !== undefined) out.maxAmountMicros = usdToMicros(r.max_amount_usd);
  if (r.customers) out.customers = new Set(r.customers);
  if (r.from) out.from = r.from;
  if (r.to_prefixes) out.toPrefixes = r.to_prefixes;
  if (r.to_numbers) out.toNumbers = new Set(r.to_numbers);
  if (r.to_domains) out.toDomains = r.to_domains.map((d) => d.toLowerCase());
  if (r.to_addresses) out.toAddresses = new Set(r.to_addresses.map((a) => a.toLowerCase()));
  if (r.max_recipients !== undefined) out.maxRecipients = r.max_recipients;
  if (r.max_segments !== undefined) out.maxSegments = r.max_segments;
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
  const compiled: CompiledPolicy = {
    name: doc.name,
    version,
    digest: policyDigest(doc),
    limits,
    vendors,
    tools: new Map(Object.entries(doc.tools).map(([tool, rule]) => [tool, compileRule(rule)])),
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
