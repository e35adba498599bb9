// Covers opening the console from `leash demo`: it prints the console URL and a fresh admin token that signs in,
// and the demo key's calls show up in the live view.
import { spawn, type ChildProcess } from 'node:child_process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Browser, BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { childEnv, LEASH_BIN } from '../support/cli.js';
import { freshDatabase, type TestDatabase } from '../support/database.js';
import { screenshot, sharedBrowser } from './browser.js';

interface DemoInfo {
  url: string;
  key: string;
  console_url: string;
  admin_token: string | null;
}

let tdb: TestDatabase;
let browser: Browser;
let child: ChildProcess | undefined;
let context: BrowserContext | undefined;

beforeAll(async () => {
  tdb = await freshDatabase(2);
  browser = await sharedBrowser();
});

afterAll(async () => {
  // The browser is the worker's (browser.ts): only this file's context is closed.
  await context?.close();
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child?.once('exit', r));
  }
  await tdb?.close();
});

function startDemo(databaseUrl: string): Promise<DemoInfo> {
  const proc = spawn(process.execPath, [LEASH_BIN, 'demo', '--port', '0', '--json'], {
    env: childEnv({
      DATABASE_URL: databaseUrl,
      LEASH_HOME: '/nonexistent/leash-demo-console',
      LEASH_LOG: 'error',
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = proc;
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.trim().endsWith('}')) resolve(JSON.parse(out) as DemoInfo);
    });
    proc.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    proc.on('exit', (code) => reject(new Error(`demo exited ${String(code)}: ${err}`)));
  });
}

describe('the console from leash demo', () => {
  it('prints the console URL and an admin token that signs in, and the demo key’s calls appear live', async () => {
    const url = new URL(inject('adminUrl'));
    url.pathname = `/${tdb.name}`;
    const info = await startDemo(url.toString());
    expect(info.console_url).toBe(info.url.replace(/\/mcp$/, '/console'));
    expect(info.admin_token).toMatch(/^[\w-]{32}$/);

    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(info.console_url);
    await page.fill('#token', info.admin_token ?? '');
    await page.click('#signin button[type=submit]');
    await page.locator('#status[data-state="live"]').waitFor();
    await page.locator('#agents-table tr[data-agent="demo-agent"]').waitFor({ timeout: 15_000 });

    const client = new Client({ name: 'demo-console-test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(info.url), {
        requestInit: { headers: { Authorization: `Bearer ${info.key}` } },
      }),
    );
    const refund = (await client.callTool({
      name: 'issue_refund',
      arguments: { payment_intent: 'pi_sandbox_alice', amount: 500 },
    })) as CallToolResult;
    expect(refund.isError, JSON.stringify(refund)).toBeFalsy();
    const id = String((refund.structuredContent as { audit_id?: unknown }).audit_id);
    await page.locator(`tr[data-audit-id="${id}"][data-outcome="succeeded"]`).waitFor({ timeout: 15_000 });
    await screenshot(page, 'demo-console');
    await client.close();
    await context.close();
  }, 90_000); // starts `leash demo` in a new process: slow on a busy machine
});
