// Covers `npm start` (leash demo): embedded database, demo policy, a printed key that works from a real MCP client.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, describe, expect, it } from 'vitest';
import { destroyEmbedded } from '../src/db/embedded.js';
import { childEnv, LEASH_BIN, runLeash } from './support/cli.js';

let home = '';

afterAll(async () => {
  if (home) await destroyEmbedded(home).finally(() => rm(home, { recursive: true, force: true }));
});

describe('leash demo (npm start)', () => {
  it('serves sandbox MCP on the embedded database and the printed key works from a real client', async () => {
    home = await mkdtemp(join(tmpdir(), 'leash-demo-'));
    const child = spawn(process.execPath, [LEASH_BIN, 'demo', '--port', '0', '--json'], {
      env: childEnv({ LEASH_HOME: home }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        let err = '';
        child.stdout.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.trim().endsWith('}')) resolve(out);
        });
        child.stderr.on('data', (c: Buffer) => (err += c.toString()));
        child.on('exit', (code) => reject(new Error(`demo exited ${String(code)}: ${err}`)));
      });
      const info = JSON.parse(line) as { url: string; key: string };
      expect(info.key).toMatch(/^lsk_/);
      const client = new Client({ name: 'demo-test', version: '1.0.0' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(info.url), {
          requestInit: { headers: { Authorization: `Bearer ${info.key}` } },
        }),
      );
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual([
        'get_budget',
        'get_payment',
        'issue_refund',
        'send_email',
        'send_sms',
      ]);
      const refund = (await client.callTool({
        name: 'issue_refund',
        arguments: { payment_intent: 'pi_sandbox_alice', amount: 500 },
      })) as CallToolResult;
      expect(refund.isError, JSON.stringify(refund)).toBeFalsy();
      expect(refund.structuredContent).toMatchObject({ amount: 500, sandbox: true });
      const sms = (await client.callTool({
        name: 'send_sms',
        arguments: { to: '+15555550123', body: 'hello from the demo' },
      })) as CallToolResult;
      expect(sms.structuredContent).toMatchObject({ sandbox: true });
      await client.close();
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    // The demo started the embedded database, so it stopped it on the way out, and said so.
    const status = await runLeash(['db', 'status', '--json'], childEnv({ LEASH_HOME: home }));
    expect(JSON.parse(status.stdout)).toMatchObject({ mode: 'embedded', running: false });
    expect(status.code).toBe(4);
    // initdb, migrations and a server process: generous, for a machine busy with other work.
  }, 300_000);
});
