import { z } from 'zod';
import {
  PolicyFileError,
  type PolicyFacts,
  type RuleDenial,
  type ToolRule,
  type ToolRules,
} from './types.js';

export type { RuleDenial, ToolRules } from './types.js';

/** Declared rules, with typed access to their compiled form for the tool that declared them. */
export interface DeclaredRules<R, F extends PolicyFacts> extends ToolRules {
  /** This tool's rules of a policy, compiled once per policy version. */
  of(rule: ToolRule): R;
  check(rule: ToolRule, facts: F): RuleDenial | undefined;
}

/**
 * Declares a tool's own policy rules: `shape` validates them when a policy is applied, `compile` turns them into
 * what `check` (and the tool's narrow/call) reads, once per policy version.
 */
export function defineRules<S extends Record<string, z.ZodType>, R, F extends PolicyFacts = PolicyFacts>(o: {
  shape: S;
  requires?: readonly (keyof S & string)[];
  compile(raw: z.output<z.ZodObject<S>>): R;
  check(rule: R, facts: F): RuleDenial | undefined;
}): DeclaredRules<R, F> {
  const schema = z.object(o.shape);
  const compiled = new WeakMap<ToolRule, { value: R }>();
  const of = (rule: ToolRule): R => {
    const hit = compiled.get(rule);
    if (hit) return hit.value;
    const parsed = schema.safeParse(rule.source);
    if (!parsed.success)
      throw new PolicyFileError(`a stored rule no longer validates: ${parsed.error.message}`);
    const value = o.compile(parsed.data);
    compiled.set(rule, { value });
    return value;
  };
  return {
    shape: o.shape,
    ...(o.requires ? { requires: o.requires } : {}),
    of,
    check: (rule, facts) => o.check(of(rule), facts),
  };
}
