import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { PipelineDeps } from '../pipeline/run-tool.js';
import { createMcpServer } from './mcp.js';

/** `leash mcp`: MCP over stdio for one vault key (from LEASH_VAULT_KEY). stdout carries only the protocol. */
export async function runStdio(deps: PipelineDeps, vaultKey: string | undefined): Promise<void> {
  const server = createMcpServer(deps, () => vaultKey);
  const transport = new StdioServerTransport();
  const closed = new Promise<void>((resolve) => {
    transport.onclose = () => resolve();
    process.stdin.on('end', () => resolve());
  });
  await server.connect(transport);
  await closed;
  await server.close();
}
