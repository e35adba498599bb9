import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { CompiledPolicy } from '../policy/compile.js';
import { narrowedTool } from '../pipeline/narrow.js';
import type { Catalog } from '../pipeline/tool.js';

/** Every failed call returns this as structuredContent (with isError: true). */
export const failureSchema = z.object({
  code: z.string().describe('stable reason, e.g. budget_exceeded, recipient_not_allowed, key_revoked'),
  message: z.string(),
  retryable: z.boolean().describe('false means: do not repeat this call'),
  audit_id: z.string().nullable(),
  details: z.record(z.string(), z.unknown()).optional(),
  vendor: z.record(z.string(), z.unknown()).optional(),
});

const callMeta = {
  audit_id: z.string().describe('the audit log row of this call'),
  sandbox: z.boolean().describe('true when the call went to a local fake vendor'),
  budget_remaining_usd: z.string().nullable().describe('USD left today in the tightest daily cap, if any'),
};

type JsonObjectSchema = Tool['inputSchema'];

function objectSchema(schema: z.ZodType): JsonObjectSchema {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete json.$schema;
  return { ...json, type: 'object' };
}

const cache = new WeakMap<CompiledPolicy, Tool[]>();

/** The tools this policy version allows, schemas narrowed and limits stated. Built once per version. */
export function toolsForPolicy(catalog: Catalog, policy: CompiledPolicy): Tool[] {
  const hit = cache.get(policy);
  if (hit) return hit;
  const tools: Tool[] = [];
  for (const [name, tool] of catalog.tools) {
    if (!policy.tools.has(name)) continue;
    const narrowed = narrowedTool(tool, policy);
    const ok = z.toJSONSchema(tool.output.extend(callMeta), {
      io: 'output',
      unrepresentable: 'any',
    }) as Record<string, unknown>;
    const err = z.toJSONSchema(failureSchema, { io: 'output' }) as Record<string, unknown>;
    delete ok.$schema;
    delete err.$schema;
    tools.push({
      name,
      title: tool.title,
      description: narrowed.description,
      inputSchema: objectSchema(narrowed.input),
      // A result is either the tool's output or a structured failure; clients validate both against this.
      outputSchema: { type: 'object', anyOf: [ok, err] },
      annotations: tool.annotations,
    });
  }
  cache.set(policy, tools);
  return tools;
}
