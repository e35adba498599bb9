// Which parameters a REST endpoint forwards: the fields its schema checks, and a written list (from the vendor's API
// reference) of parameters that pass through unread. Anything else is refused, naming it: another form of a checked
// field (`amount[]`, `To[0]`, a re-cased `to`), which the vendor may read in its place, or a parameter not listed.
import { z } from 'zod';

/** A passthrough entry: `name` is that parameter; `name[*]` every key under it (`metadata[order]`, `expand[0]`). */
export type Passthrough = string;

const FAMILY = '[*]';
/** `amount[]`, `amount[x]` and `Amount` all name `amount`. */
const baseOf = (key: string) => (key.split('[', 1)[0] ?? '').toLowerCase();
const shown = (p: Passthrough) => (p.endsWith(FAMILY) ? `${p.slice(0, -FAMILY.length)}[…]` : p);

/** The top-level fields an endpoint's body schema checks (an object schema, refined or transformed). */
export function checkedFields(schema: z.core.$ZodType): string[] {
  if (schema instanceof z.ZodObject) return Object.keys(schema.shape);
  if (schema instanceof z.ZodPipe) return checkedFields(schema.in);
  throw new Error(
    'an endpoint body must be an object schema (refined or transformed), so its fields are known',
  );
}

/**
 * A schema for a decoded form, query or JSON object that refuses every key except the checked fields and the passthrough
 * list; run it before the endpoint's own schema. `operation` (e.g. `POST /v1/refunds`) is named in the refusal.
 */
export function closedParams(o: {
  operation: string;
  checked: readonly string[];
  passthrough: readonly Passthrough[];
}): z.ZodType<unknown> {
  const checked = new Map(o.checked.map((f) => [f.toLowerCase(), f]));
  const exact = new Set([...o.checked, ...o.passthrough.filter((p) => !p.endsWith(FAMILY))]);
  // 'metadata[*]' → every key starting 'metadata['
  const families = o.passthrough.filter((p) => p.endsWith(FAMILY)).map((p) => p.slice(0, -2));
  for (const p of o.passthrough) {
    const field = checked.get(baseOf(p));
    // A list that let `amount[*]` through beside a checked `amount` would reopen what it closes: refused at load.
    if (field !== undefined && p !== field)
      throw new Error(`${o.operation}: passthrough '${p}' is another form of the checked field '${field}'`);
  }
  const listed = [...o.checked, ...o.passthrough].map(shown);
  const expected = listed.length ? `expected one of: ${listed.join(', ')}` : 'it takes none';
  const problem = (key: string): string | undefined => {
    if (exact.has(key) || families.some((f) => key.startsWith(f))) return undefined;
    const field = checked.get(baseOf(key));
    if (field !== undefined)
      return `another form of ${field}, which leash checks: send ${field} itself, once`;
    return `not a parameter leash forwards on ${o.operation} (${expected})`;
  };
  return z.unknown().superRefine((value, ctx) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return; // the endpoint's schema says why
    for (const key of Object.keys(value)) {
      const message = problem(key);
      if (message) ctx.addIssue({ code: 'custom', path: [key], message });
    }
  });
}
