// Shapes the JSON Schemas leash advertises so every agent framework keeps them: OpenAI strict function
// calling (every property required, optional ones nullable, supported keywords only), LangChain's simplifier
// (which drops every anyOf) and the rest. The server still validates with the tools' own zod schemas.

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Keywords OpenAI's published strict subset supports besides structure (type, properties, items, enum, …). */
const STRICT_KEYWORDS = new Set([
  'type',
  'description',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'enum',
  'const',
  'pattern',
  'format',
  'multipleOf',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'minItems',
  'maxItems',
]);

/** The keywords an advertised input schema may use; tests check every schema against this list. */
export const strictKeywords: ReadonlySet<string> = STRICT_KEYWORDS;

function lengthSentence(min: unknown, max: unknown): string | undefined {
  const lo = typeof min === 'number' && min > 0 ? min : undefined;
  const hi = typeof max === 'number' ? max : undefined;
  if (lo !== undefined && hi !== undefined)
    return lo === 1 ? `Not empty; at most ${hi} characters.` : `${lo}–${hi} characters.`;
  if (hi !== undefined) return `At most ${hi} characters.`;
  if (lo !== undefined) return lo === 1 ? 'Not empty.' : `At least ${lo} characters.`;
  return undefined;
}

function withSentence(description: unknown, sentence: string | undefined): string | undefined {
  const d = typeof description === 'string' ? description.trim() : '';
  if (!sentence) return d || undefined;
  return d ? `${/[.!?]$/.test(d) ? d : `${d}.`} ${sentence}` : sentence;
}

/** One property (or array item): limits a strict schema cannot carry become words, the rest is kept. */
function strictValue(schema: unknown): Json {
  if (!isObject(schema)) return {};
  // LangChain's adapter drops every anyOf, leaving the model an untyped field; a tool must advertise one type.
  if (schema.anyOf !== undefined || schema.oneOf !== undefined || schema.allOf !== undefined)
    throw new Error(
      `a tool input field must have one type, not a union: ${JSON.stringify(schema).slice(0, 120)}`,
    );
  const out: Json = {};
  for (const [k, v] of Object.entries(schema)) if (STRICT_KEYWORDS.has(k)) out[k] = v;
  // zod writes its own regex beside `format: email`; the format says it, and some providers reject lookarounds.
  if (out.format !== undefined) delete out.pattern;
  // zod bounds every integer by the safe-integer range; that says nothing to a model.
  if (out.maximum === Number.MAX_SAFE_INTEGER) delete out.maximum;
  if (out.minimum === Number.MIN_SAFE_INTEGER) delete out.minimum;
  const description = withSentence(schema.description, lengthSentence(schema.minLength, schema.maxLength));
  if (description) out.description = description;
  else delete out.description;
  if (out.items !== undefined) out.items = strictValue(out.items);
  if (isObject(out.properties)) return strictObject(out);
  return out;
}

/** Adds null to a property's type (and enum), the strict-mode way of saying "optional". */
function nullable(schema: Json): Json {
  const out = { ...schema };
  if (typeof out.type === 'string') out.type = out.type === 'null' ? 'null' : [out.type, 'null'];
  else if (Array.isArray(out.type) && !out.type.includes('null'))
    out.type = [...(out.type as unknown[]), 'null'];
  if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...(out.enum as unknown[]), null];
  return out;
}

function strictObject(schema: Json): Json {
  const required = new Set(Array.isArray(schema.required) ? (schema.required as string[]) : []);
  const properties: Json = {};
  for (const [name, value] of Object.entries(isObject(schema.properties) ? schema.properties : {})) {
    const v = strictValue(value);
    properties[name] = required.has(name) ? v : nullable(v);
  }
  const out: Json = { type: 'object' };
  if (typeof schema.description === 'string') out.description = schema.description;
  out.properties = properties;
  out.required = Object.keys(properties);
  out.additionalProperties = false;
  return out;
}

/**
 * A tool's input schema as every framework (and OpenAI strict mode) accepts it: a closed object, every property
 * listed in `required`, optional ones nullable (null means omitted), no anyOf, and length limits in words.
 */
export function strictInputSchema(json: Json): Json & { type: 'object' } {
  if (json.anyOf !== undefined || json.oneOf !== undefined || json.allOf !== undefined)
    throw new Error('a tool input schema must be one object, not a union'); // caught by tests, at build time
  return { ...strictObject(json), type: 'object' };
}

const typesOf = (s: Json): unknown[] =>
  Array.isArray(s.type) ? s.type : s.type === undefined ? [] : [s.type];

/** Both sides' types (e.g. audit_id: a string on success, string or null on a refusal); none means any. */
function mergedType(a: Json, b: Json): unknown {
  const ta = typesOf(a);
  const tb = typesOf(b);
  if (!ta.length || !tb.length) return undefined;
  const all = [...new Set([...ta, ...tb])];
  return all.length === 1 ? all[0] : all;
}

/**
 * One output schema that both a tool's result and a refusal satisfy, with no root anyOf (which OpenAI rejects):
 * the union of both objects' properties, none required, so the MCP client's own validation passes for both.
 */
export function resultSchema(ok: Json, failure: Json, description: string): Json & { type: 'object' } {
  const okProps = isObject(ok.properties) ? ok.properties : {};
  const failProps = isObject(failure.properties) ? failure.properties : {};
  const properties: Json = { ...failProps };
  for (const [name, value] of Object.entries(okProps)) {
    const other = failProps[name];
    properties[name] =
      isObject(other) && isObject(value) ? { ...other, ...value, type: mergedType(other, value) } : value;
  }
  return { type: 'object', description, properties };
}
