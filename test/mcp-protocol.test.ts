// Covers the MCP protocol exactly: an unknown tool is a JSON-RPC error (-32602) that is still audited, and a wrong
// or revoked vault key is refused with one clear message (no doubled "MCP error" prefix), over HTTP and over the
// server `leash mcp` serves on stdio.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { revokeKeys } from '../src/keys/vault-keys.js';
import type { PipelineDeps } from '../src/pipeline/run-tool.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { createMcpServer } from '../src/server/mcp.js';
import { catalog } from '../tools/index.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, pipelineFor, testConfig } from './support/governance.js';

let tdb: TestDatabase;
let deps: PipelineDeps;
let http: RunningHttp;
let key: { id: string; key: string };

beforeAll(async () => {
  tdb = await freshDatabase(4);
  await applyTestPolicy(tdb.db, catalog, { name: 'proto', tools: { get_budget: {} } });
  key = await keyFor(tdb.db, { policy: 'proto' });
  deps = pipelineFor(tdb.db, catalog, testConfig());
  http = await startHttpServer(deps, { host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await http.close();
  await tdb.close();
});

async function httpClient(vaultKey: string): Promise<Client> {
  const client = new Client({ name: 'proto', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${http.url}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${vaultKey}` } },
    }),
  );
  return client;
}

/** The server `leash mcp` runs (runStdio builds exactly this), reached through an in-memory pair of transports. */
async function stdioClient(vaultKey: string): Promise<Client> {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await createMcpServer(deps, () => vaultKey).connect(serverSide);
  const client = new Client({ name: 'proto-stdio', version: '1.0.0' });
  await client.connect(clientSide);
  return client;
}

async function rejection(p: Promise<unknown>): Promise<McpError> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(McpError);
  return error as McpError;
}

describe('an unknown tool', () => {
  it('is a JSON-RPC Invalid params error naming the tool, and still writes the denied row with tool other', async () => {
    // A key of its own: the other tests' unknown tools are audited too, under the shared key.
    const own = await keyFor(tdb.db, { policy: 'proto' });
    const client = await httpClient(own.key);
    const error = await rejection(client.callTool({ name: 'drop_tables', arguments: { x: 1 } }));
    await client.close();
    expect(error.code).toBe(ErrorCode.InvalidParams);
    expect(error.message).toBe('MCP error -32602: Unknown tool: drop_tables');
    const rows = await tdb.pool.query<Record<string, unknown>>(
      `select tool, decision, reason, request from audit_log where key_id = $1 and reason = 'unknown_tool'`,
      [own.id],
    );
    expect(rows.rows).toEqual([
      {
        tool: 'other',
        decision: 'denied',
        reason: 'unknown_tool',
        request: { name: 'drop_tables', arguments: { x: 1 } },
      },
    ]);
  });

  it('keeps the request id and carries the audit id in the error data', async () => {
    const res = await fetch(`${http.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key.key}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 77,
        method: 'tools/call',
        params: { name: 'nope', arguments: {} },
      }),
    });
    expect(await res.json()).toMatchObject({
      jsonrpc: '2.0',
      id: 77,
      error: {
        code: -32602,
        message: 'Unknown tool: nope',
        data: { code: 'unknown_tool', audit_id: expect.stringMatching(/^[0-9a-f-]{36}$/) as unknown },
      },
    });
  });

  it('a known tool the policy does not allow stays a tool result with isError', async () => {
    const client = await httpClient(key.key);
    const r = await client.callTool({ name: 'send_sms', arguments: { to: '+15555550123', body: 'x' } });
    await client.close();
    expect(r).toMatchObject({ isError: true, structuredContent: { code: 'tool_not_allowed' } });
  });
});

describe('a wrong or revoked key under leash mcp (stdio)', () => {
  it.each([
    ['unknown', () => `lsk_${'a'.repeat(12)}_${'b'.repeat(52)}`, 'key_invalid'],
    [
      'revoked',
      async () => {
        const revoked = await keyFor(tdb.db, { policy: 'proto' });
        await revokeKeys(tdb.db, { id: revoked.id });
        return revoked.key;
      },
      'key_revoked',
    ],
  ])('answers tools/list for an %s key with one clear message', async (_kind, make, code) => {
    const client = await stdioClient(await make());
    const error = await rejection(client.listTools());
    await client.close();
    expect(error.code).toBe(ErrorCode.InvalidRequest);
    expect(error.message).toMatch(new RegExp(`^MCP error -32600: ${code}: \\w`));
    expect(error.message.match(/MCP error/g)).toHaveLength(1);
    expect(error.message.match(new RegExp(code, 'g'))).toHaveLength(1);
  });
});
