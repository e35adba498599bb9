import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv-provider.js';
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ErrorCode,
  type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';
import { authenticate } from '../keys/authenticate.js';
import { formatUsd } from '../policy/money.js';
import { runTool, type PipelineDeps, type PreAuth, type ToolCallResult } from '../pipeline/run-tool.js';
import { toolsForPolicy } from './tool-list.js';

// One validator for the process; the SDK would otherwise compile a new Ajv for every request.
const validator = new AjvJsonSchemaValidator();

export const SERVER_INFO = { name: 'leash', version: '0.1.0' };

const INSTRUCTIONS =
  'leash governs vendor tools (payments, SMS, email) for this agent. Every call is checked against a policy and budget and is audited. ' +
  'When a call fails with retryable: false (e.g. budget_exceeded, key_revoked, loop_detected), do not retry it; stop and report to a human. ' +
  'Use get_budget to see what is left.';

/** Turns a pipeline result into an MCP tool result: structuredContent always, isError on failure. */
export function toCallToolResult(r: ToolCallResult): CallToolResult {
  if (r.ok) {
    const structured = {
      ...r.output,
      audit_id: r.audit_id,
      sandbox: r.sandbox,
      budget_remaining_usd: r.remaining_micros === null ? null : formatUsd(r.remaining_micros),
    };
    return { content: [{ type: 'text', text: JSON.stringify(structured) }], structuredContent: structured };
  }
  const f = r.failure;
  return {
    isError: true,
    content: [{ type: 'text', text: `${f.code}: ${f.message}${f.retryable ? '' : ' (do not retry)'}` }],
    structuredContent: { ...f },
  };
}

/**
 * An MCP server for one vault key. `key` is read per request, so stdio and HTTP share this; the key is
 * authenticated on every list and every call (no cache outlives a revoke).
 */
export function createMcpServer(
  deps: PipelineDeps,
  key: () => string | undefined,
  preAuth?: PreAuth,
): Server {
  const server = new Server(SERVER_INFO, {
    capabilities: { tools: { listChanged: false } },
    instructions: INSTRUCTIONS,
    jsonSchemaValidator: validator, // shared: a server is built per HTTP request
  });
  server.setRequestHandler(ListToolsRequestSchema, async () => {
    let auth;
    try {
      auth = preAuth?.result ?? (await authenticate(deps.db, key(), null));
    } catch {
      throw new McpError(
        ErrorCode.InternalError,
        'leash cannot reach its database; no tools are available right now',
      );
    }
    if (!auth.ok)
      throw new McpError(ErrorCode.InvalidRequest, 'the vault key is missing, malformed or not recognised');
    if (auth.key.revoked_at) throw new McpError(ErrorCode.InvalidRequest, 'this vault key has been revoked');
    if (auth.key.expires_at && auth.key.expires_at.getTime() <= Date.now())
      throw new McpError(ErrorCode.InvalidRequest, 'this vault key has expired');
    return { tools: toolsForPolicy(deps.catalog, auth.key.policy) };
  });
  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    const result = await runTool(deps, key(), request.params.name, request.params.arguments ?? {}, preAuth);
    return toCallToolResult(result);
  });
  return server;
}
