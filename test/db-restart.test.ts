// Covers a running `leash serve` outliving `leash db stop` / `leash db start`: calls fail closed while the
// embedded database is down and succeed again, without restarting leash, once it is back (same port or not).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/database.js';
import { destroyEmbedded, embeddedStatus } from '../src/db/embedded.js';
import { catalog } from '../tools/index.js';
import { childEnv, LEASH_BIN, runLeash } from './support/cli.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';
import { startVendors, type Vendors } from './support/vendors.js';

let home: string;
let env: NodeJS.ProcessEnv;
let vendors: Vendors;
let serve: ChildProcess;
let base: string;
let vaultKey: string;
let serveLog = '';

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'leash-restart-'));
  vendors = await startVendors();
  env = childEnv({ ...vendors.env, LEASH_HOME: home, LEASH_LOG: 'error' });
  const started = await runLeash(['db', 'start'], env);
  expect(started.code, started.stderr).toBe(0);
  const handle = await openDatabase(testConfig({ LEASH_HOME: home }), { poolMax: 2 });
  try {
    await applyTestPolicy(handle.db, catalog, {
      name: 'restart',
      limits: { daily_usd: 100 },
      tools: { send_sms: { from: '+15550001111' } },
    });
    vaultKey = (await keyFor(handle.db, { policy: 'restart' })).key;
  } finally {
    await handle.close();
  }
  serve = spawn(process.execPath, [LEASH_BIN, 'serve', '--port', '0', '--reconcile-every', '0'], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  base = await new Promise<string>((resolve, reject) => {
    serve.stderr?.on('data', (c: Buffer) => {
      serveLog += c.toString();
      const url = /serving MCP at (\S+)\/mcp/.exec(serveLog)?.[1];
      if (url) resolve(url);
    });
    serve.on('exit', (code) => reject(new Error(`leash serve exited ${String(code)}: ${serveLog}`)));
  });
});

afterAll(async () => {
  // Guarded: when beforeAll failed half-way, the cluster must still be destroyed.
  if (serve?.exitCode === null) {
    const exited = new Promise((r) => serve.once('exit', r));
    serve.kill('SIGTERM');
    await exited;
  }
  await vendors?.close();
  await destroyEmbedded(home);
  await rm(home, { recursive: true, force: true });
});

interface Call {
  start: number;
  end: number;
  ok: boolean;
  status: number;
  /** http_503, the tool refusal code, or network. */
  refusal: string;
}

let n = 0;
/** One `send_sms` over the MCP endpoint, as a raw JSON-RPC POST; status 0 when leash could not be reached. */
async function call(): Promise<Call> {
  const start = Date.now();
  try {
    const res = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${vaultKey}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: ++n,
        method: 'tools/call',
        params: { name: 'send_sms', arguments: { to: '+15551234567', body: `message ${n}` } },
      }),
    });
    const body = (await res.json()) as {
      result?: { isError?: boolean; structuredContent?: { code?: string } };
    };
    const ok = res.status === 200 && body.result !== undefined && body.result.isError !== true;
    // Refused at the transport (503) or, for a key the server already knows, as a tool error.
    const refusal = res.status === 503 ? 'http_503' : (body.result?.structuredContent?.code ?? 'none');
    return { start, end: Date.now(), ok, status: res.status, refusal };
  } catch {
    return { start, end: Date.now(), ok: false, status: 0, refusal: 'network' };
  }
}

/** Three callers in a loop until stopped, so calls are in flight when the database goes away. */
function callLoop() {
  const calls: Call[] = [];
  let running = true;
  const worker = async () => {
    while (running) {
      calls.push(await call());
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const done = Promise.all([worker(), worker(), worker()]);
  return {
    calls,
    okAfter: (t: number) => calls.find((c) => c.start >= t && c.ok),
    async stop() {
      running = false;
      await done;
    },
  };
}

const health = async () =>
  (await fetch(`${base}/healthz`).catch(() => ({ status: `leash serve is gone: ${serveLog}` }))).status;
const until = async (pred: () => boolean, ms: number) => {
  for (const deadline = Date.now() + ms; !pred() && Date.now() < deadline;)
    await new Promise((r) => setTimeout(r, 10));
};

/** Stops the database, keeps it down for a while (optionally holding its port), starts it; returns timings. */
async function bounce(o: { holdPort?: boolean } = {}) {
  const loop = callLoop();
  let holder: Server | undefined;
  try {
    await until(() => loop.calls.filter((c) => c.ok).length >= 3, 30_000);
    expect(
      loop.calls.filter((c) => c.ok).length,
      JSON.stringify(loop.calls.slice(-3)) + serveLog,
    ).toBeGreaterThanOrEqual(3);
    const portBefore = (await embeddedStatus(home)).port;
    const stopped = await runLeash(['db', 'stop'], env);
    expect(stopped.code, stopped.stderr).toBe(0);
    const downFrom = Date.now();
    const vendorBefore = vendors.requests();
    if (o.holdPort) {
      // Something else takes the port while the database is down; it hangs up on whoever connects.
      const server = createServer((socket) => socket.destroy());
      holder = server;
      await new Promise<void>((r) => server.listen(portBefore, '127.0.0.1', r));
    }
    // Until calls have been made, and answered, while it is down.
    await until(() => loop.calls.some((c) => c.start >= downFrom), 30_000);
    const healthDown = await health();
    const downUntil = Date.now();
    const vendorCallsWhileDown = vendors.requests() - vendorBefore;
    const started = await runLeash(['db', 'start'], env);
    expect(started.code, started.stderr).toBe(0);
    const upAt = Date.now();
    await until(() => loop.okAfter(upAt) !== undefined, 30_000);
    const healthUp = await health();
    const back = loop.okAfter(upAt);
    return {
      portBefore,
      portAfter: (await embeddedStatus(home)).port,
      down: loop.calls.filter((c) => c.start >= downFrom && c.end <= downUntil),
      recoveryMs: back ? back.end - upAt : Infinity,
      vendorCallsWhileDown,
      healthDown,
      healthUp,
    };
  } finally {
    await loop.stop();
    holder?.close();
  }
}

describe('leash serve across a database restart', () => {
  it('refuses calls while the database is down and serves again once it is back', async () => {
    const r = await bounce();
    expect(r.down.length).toBeGreaterThan(0);
    expect(r.down.filter((c) => c.ok)).toEqual([]);
    expect(r.vendorCallsWhileDown).toBe(0);
    expect(
      r.down.map((c) => c.refusal).filter((s) => s !== 'http_503' && s !== 'audit_unavailable'),
      serveLog,
    ).toEqual([]);
    expect(r.healthDown).toBe(503);
    expect(Number.isFinite(r.recoveryMs), serveLog).toBe(true); // served again (how soon is for bench/)
    expect(r.healthUp).toBe(200);
    expect(serve.exitCode, serveLog).toBeNull();
    expect(r.portAfter).toBe(r.portBefore);
    console.info(`db restart on the same port: serving again ${r.recoveryMs} ms after db start returned`);
    // Stops and starts the database with the CLI: slow on a busy machine.
  }, 180_000);

  it('follows the database to a new port when its old one was taken while it was down', async () => {
    const r = await bounce({ holdPort: true });
    expect(r.portAfter).not.toBe(r.portBefore);
    expect(r.down.length).toBeGreaterThan(0);
    expect(r.down.filter((c) => c.ok)).toEqual([]);
    expect(r.vendorCallsWhileDown).toBe(0);
    expect(r.healthDown).toBe(503);
    expect(Number.isFinite(r.recoveryMs), serveLog).toBe(true); // served again (how soon is for bench/)
    expect(r.healthUp).toBe(200);
    expect(serve.exitCode, serveLog).toBeNull();
    console.info(`db restart on a new port: serving again ${r.recoveryMs} ms after db start returned`);
    // Stops and starts the database with the CLI: slow on a busy machine.
  }, 180_000);

  it('survives the database going away under a connection that is checked out', async () => {
    const handle = await openDatabase(testConfig({ LEASH_HOME: home }), { poolMax: 2, migrate: false });
    try {
      const client = await handle.pool.connect();
      const lost = new Promise((r) => client.once('end', r));
      const stopped = await runLeash(['db', 'stop'], env);
      expect(stopped.code, stopped.stderr).toBe(0);
      await lost; // without a listener for the 'error' before it, this process would have crashed
      await expect(client.query('select 1')).rejects.toThrow();
      client.release(true);
      const started = await runLeash(['db', 'start'], env);
      expect(started.code, started.stderr).toBe(0);
      const { rows } = await sql<{ one: number }>`select 1 as one`.execute(handle.db);
      expect(rows).toEqual([{ one: 1 }]);
    } finally {
      await handle.close();
    }
    // Stops and starts the database with the CLI: slow on a busy machine.
  }, 180_000);
});
