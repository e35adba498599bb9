import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { CompiledPolicy } from '../policy/compile.js';
import { narrowedTool } from '../pipeline/narrow.js';
import type { Catalog } from '../pipeline/tool.js';
import { resultSchema, strictInputSchema } from './strict-schema.js';

/** Every failed call returns this as structuredContent (with isError: true). */
export const failureSchema = z.object({
  code: z.string().describe('stable reason, e.g. budget_exceeded, recipient_not_allowed, key_revoked'),
  message: z.string(),
  retryable: z
    .boolean()
    .describe(
      'true: fix the arguments (invalid_input) or wait, then call again; false: do not repeat this call',
    ),
  audit_id: z.string().nullable(),
  details: z.record(z.string(), z.unknown()).optional(),
  vendor: z.record(z.string(), z.unknown()).optional(),
});

const callMeta = {
  audit_id: z.string().describe('the audit log row of this call'),
  sandbox: z.boolean().describe('true when the call went to a local fake vendor'),
  budget_remaining_usd: z.string().nullable().describe('USD left today in the tightest daily cap, if any'),
};

function inputSchema(schema: z.ZodType): Tool['inputSchema'] {
  return strictInputSchema(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }));
}

const RESULT_HELP =
  'On success the fields of the result; when isError is true a refusal instead: code, message, retryable, audit_id, details.';

const failureJson = z.toJSONSchema(failureSchema, { io: 'output' });

const cache = new WeakMap<Catalog, WeakMap<CompiledPolicy, Tool[]>>();

/** The tools this policy version allows, schemas narrowed and limits stated. Built once per catalog and version. */
export function toolsForPolicy(catalog: Catalog, policy: CompiledPolicy): Tool[] {
  let byPolicy = cache.get(catalog);
  if (!byPolicy) cache.set(catalog, (byPolicy = new WeakMap()));
  const hit = byPolicy.get(policy);
  if (hit) return hit;
  const tools: Tool[] = [];
  for (const [name, tool] of catalog.tools) {
    if (!policy.tools.has(name)) continue;
    const narrowed = narrowedTool(tool, policy);
    const ok = z.toJSONSchema(tool.output.extend(callMeta), { io: 'output', unrepresentable: 'any' });
    tools.push({
      name,
      title: tool.title,
      description: narrowed.description,
      inputSchema: inputSchema(narrowed.input),
      // Clients validate a refusal's structuredContent too, and strict providers reject a root anyOf: one object fits both.
      outputSchema: resultSchema(ok, failureJson, RESULT_HELP),
      annotations: tool.annotations,
    });
  }
  byPolicy.set(policy, tools);
  return tools;
}
