// Every advertised tool schema passes OpenAI's strict-schema check unchanged, has no anyOf, and keeps policy limits.
import { toStrictJsonSchema } from 'openai/lib/transform';
import { describe, expect, it } from 'vitest';
import { compilePolicy, validatePolicy } from '../../src/policy/compile.js';
import { ruleSpecs } from '../../src/pipeline/tool.js';
import { strictKeywords } from '../../src/server/strict-schema.js';
import { toolsForPolicy } from '../../src/server/tool-list.js';
import { catalog } from '../../tools/index.js';

const narrowed = compilePolicy(
  validatePolicy(
    {
      name: 'narrow',
      tools: {
        // An approval rule lists get_approval without naming it.
        issue_refund: { max_amount_usd: 50, customers: ['cus_A'], approval: { above_usd: 20 } },
        get_payment: { customers: ['cus_A'] },
        send_sms: { from: '+15550001111', to_prefixes: ['+1'], max_segments: 2 },
        send_email: { from: 'Support <support@acme.com>', to_domains: ['acme.com'], max_recipients: 2 },
        get_budget: {},
      },
    },
    ruleSpecs(catalog),
  ),
  1,
);
const bare = compilePolicy(
  validatePolicy(
    {
      name: 'bare',
      tools: {
        issue_refund: {},
        get_payment: {},
        send_sms: { from: '+15550001111' },
        send_email: { from: 'a@acme.com' },
        get_budget: {},
        get_approval: {},
      },
    },
    ruleSpecs(catalog),
  ),
  1,
);

type Json = Record<string, unknown>;

/** Every (sub)schema with its path. */
function* walk(schema: Json, path = '<root>'): Generator<[string, Json]> {
  yield [path, schema];
  for (const [k, v] of Object.entries((schema.properties as Json | undefined) ?? {}))
    yield* walk(v as Json, `${path}.${k}`);
  if (schema.items) yield* walk(schema.items as Json, `${path}[]`);
}

const cases = [narrowed, bare].flatMap((policy) =>
  toolsForPolicy(catalog, policy).map((t) => [`${policy.name}/${t.name}`, t] as const),
);

describe('advertised tool schemas', () => {
  it('cover every tool in the catalog', () => {
    expect(cases).toHaveLength(2 * catalog.tools.size);
  });

  it.each(cases)('%s input schema is already strict: toStrictJsonSchema leaves it unchanged', (_n, tool) => {
    const schema = tool.inputSchema as Json;
    expect(toStrictJsonSchema(schema as never)).toEqual(schema);
  });

  it.each(cases)(
    '%s input schema has a type on every field, no anyOf and only strict keywords',
    (_n, tool) => {
      for (const [path, s] of walk(tool.inputSchema)) {
        expect(s.type, path).toBeDefined();
        for (const k of Object.keys(s)) expect(strictKeywords.has(k), `${path} uses ${k}`).toBe(true);
      }
      const props = (tool.inputSchema.properties ?? {}) as Record<string, Json>;
      expect(tool.inputSchema.required ?? []).toEqual(Object.keys(props));
    },
  );

  it.each(cases)('%s output schema is one object with no root anyOf', (_n, tool) => {
    expect(tool.outputSchema?.type).toBe('object');
    expect(tool.outputSchema).not.toHaveProperty('anyOf');
    expect(Object.keys(tool.outputSchema?.properties ?? {})).toEqual(
      expect.arrayContaining(['code', 'message', 'retryable', 'audit_id']),
    );
  });

  it('makes optional fields nullable and keeps policy limits, in the schema or in words', () => {
    const tools = new Map(toolsForPolicy(catalog, narrowed).map((t) => [t.name, t]));
    const refund = tools.get('issue_refund')?.inputSchema.properties as Record<string, Json>;
    expect(refund.amount).toMatchObject({ type: ['integer', 'null'], maximum: 5000 });
    expect(refund.reason).toMatchObject({ type: ['string', 'null'] });
    expect(refund.reason?.enum).toContain(null);
    const email = tools.get('send_email')?.inputSchema.properties as Record<string, Json>;
    expect(email.to).toMatchObject({
      type: 'array',
      minItems: 1,
      maxItems: 2,
      items: { type: 'string', format: 'email' },
    });
    expect(email.text).toMatchObject({ type: ['string', 'null'] });
    expect(String(email.subject?.description)).toMatch(/at most \d+ characters/);
    const sms = tools.get('send_sms')?.inputSchema.properties as Record<string, Json>;
    expect(sms.body).not.toHaveProperty('maxLength');
    expect(String(sms.body?.description)).toMatch(/At most 306 characters|306/);
  });
});
