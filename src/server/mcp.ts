import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv-provider.js';
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
  ErrorCode,
  type CallToolResult,
} from '@modelcontextprotocol/sdk/types.js';
import { formatUsd } from '../policy/money.js';
import type { ToolFailure } from '../pipeline/errors.js';
import { refusalKind } from '../pipeline/refusals.js';
import { runTool, type PipelineDeps, type ToolCallResult } from '../pipeline/run-tool.js';
import { toolsForPolicy } from './tool-list.js';

// One validator for the process; the SDK would otherwise compile a new Ajv for every request.
const validator = new AjvJsonSchemaValidator();

export const SERVER_INFO = { name: 'leash', version: '0.1.0' };

const INSTRUCTIONS =
  'leash governs vendor tools (payments, SMS, email) for this agent. Every call is checked against a policy and budget and is audited. ' +
  'A refused call answers with its code first and says whether to retry: after invalid_input, fix the named arguments and call again; ' +
  'when it says do not retry (e.g. budget_exceeded, key_revoked, loop_detected), stop and report to a human. ' +
  'When a call’s outcome is unknown (the vendor timed out or failed; it may have acted), do not repeat it: the same ' +
  'call is refused as outcome_pending until `leash reconcile` settles the first. ' +
  'Use get_budget to see what is left.';

/** What to do next, in words: the only part of a refusal every framework shows its model. */
function retryAdvice(f: ToolFailure): string {
  if (f.code === 'invalid_input') return 'Retryable: fix the arguments named above and call again.';
  if (f.details?.outcome === 'unknown')
    return 'Do not repeat: the outcome is unknown and the vendor may have acted; leash reconcile settles it (an identical call is refused as outcome_pending until then); report to a human.';
  const wait = f.details?.retry_after_seconds;
  if (f.retryable && typeof wait === 'number')
    return `Retryable: nothing was done; call again in ${wait}s (retry_after_seconds: ${wait}).`;
  if (f.retryable) return 'Retryable: nothing was done; call again later.';
  return 'Do not retry: the same call will be refused again; stop and report to a human.';
}

/** A refusal as text: the code first, the reason, the retry advice and the audit id, on one line. */
export function refusalText(f: ToolFailure): string {
  const message = f.message.trim().replace(/[.;:,\s]+$/, '');
  return `${f.code}: ${message}. ${retryAdvice(f)} audit_id: ${f.audit_id ?? 'none'}`;
}

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
  return { isError: true, content: [{ type: 'text', text: refusalText(f) }], structuredContent: { ...f } };
}

/**
 * A JSON-RPC error sent as written: the SDK's McpError puts "MCP error <code>: " into its message, and the client
 * adds that prefix again when it builds its own, so a thrown McpError reads doubled.
 */
class ProtocolError extends Error {
  override name = 'ProtocolError';
  constructor(
    readonly code: number,
    message: string,
    readonly data?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** A caller-chosen tool name, short enough to repeat in an error message. */
const shown = (name: string) => (name.length > 64 ? `${name.slice(0, 64)}…` : name);

/**
 * An MCP server for one vault key. `key` is read per request, so stdio and HTTP share this; the key is
 * authenticated on every list and every call (no cache outlives a revoke).
 */
export function createMcpServer(deps: PipelineDeps, key: () => string | undefined): Server {
  const server = new Server(SERVER_INFO, {
    capabilities: { tools: { listChanged: false } },
    instructions: INSTRUCTIONS,
    jsonSchemaValidator: validator, // shared: a server is built per HTTP request
  });
  server.setRequestHandler(ListToolsRequestSchema, async () => {
    let auth;
    try {
      // Fresh: a listing must show the key's current policy version, not a cached one.
      auth = await deps.keys.identify(key(), true);
    } catch {
      const code = 'audit_unavailable';
      throw new ProtocolError(ErrorCode.InternalError, `${code}: ${refusalKind(code).message({})}`, { code });
    }
    const refused = (code: string) =>
      new ProtocolError(ErrorCode.InvalidRequest, `${code}: ${refusalKind(code).message({})}`, { code });
    if (!auth.ok) throw refused('key_invalid');
    if (auth.key.revoked_at) throw refused('key_revoked');
    if (auth.key.expires_at && auth.key.expires_at.getTime() <= Date.now()) throw refused('key_expired');
    return { tools: toolsForPolicy(deps.catalog, auth.key.policy) };
  });
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    // The SDK aborts extra.signal when the client cancels or the transport closes: a get_approval wait ends then.
    const result = await runTool(
      deps,
      key(),
      request.params.name,
      request.params.arguments ?? {},
      extra.signal,
    );
    // An unknown tool is a protocol error (as the MCP spec has it), not a tool result; its row is written already.
    if (!result.ok && result.failure.code === 'unknown_tool') {
      const { code, audit_id } = result.failure;
      throw new ProtocolError(ErrorCode.InvalidParams, `Unknown tool: ${shown(request.params.name)}`, {
        code,
        audit_id,
      });
    }
    return toCallToolResult(result);
  });
  return server;
}
