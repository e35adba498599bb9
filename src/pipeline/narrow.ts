import type { z } from 'zod';
import type { CompiledPolicy } from '../policy/compile.js';
import type { ToolDefinition } from './tool.js';

export interface NarrowedTool {
  input: z.ZodObject;
  description: string;
}

const cache = new WeakMap<CompiledPolicy, WeakMap<ToolDefinition, NarrowedTool>>();

/** The tool as this policy version shows it: schema narrowed, limits stated. Built once per tool and version. */
export function narrowedTool(tool: ToolDefinition, policy: CompiledPolicy): NarrowedTool {
  let perPolicy = cache.get(policy);
  if (!perPolicy) cache.set(policy, (perPolicy = new WeakMap<ToolDefinition, NarrowedTool>()));
  let narrowed = perPolicy.get(tool);
  if (!narrowed) {
    const rule = policy.tools.get(tool.name);
    const n = rule && tool.narrow ? tool.narrow(rule) : { input: tool.input, limits: [] };
    narrowed = {
      input: n.input,
      description: n.limits.length
        ? `${tool.description}\n\nLimits under policy '${policy.name}': ${n.limits.join(' ')}`
        : tool.description,
    };
    perPolicy.set(tool, narrowed);
  }
  return narrowed;
}
