// Helpers for REST front door tests: a spawned `leash serve`, SDK errors caught as values, and audit rows by key.
import { spawn, type ChildProcess } from 'node:child_process';
import type pg from 'pg';
import { childEnv, LEASH_BIN } from './cli.js';

export interface Served {
  child: ChildProcess;
  url: string;
  port: number;
  /** Everything the process wrote (stdout and stderr). */
  log(): string;
  stop(): Promise<void>;
}

/** Spawns `leash serve` on port 0 (no reconcile loop) against `databaseUrl`, with the vendor env given. */
export async function startServe(databaseUrl: string, env: Record<string, string>): Promise<Served> {
  const child = spawn(process.execPath, [LEASH_BIN, 'serve', '--port', '0', '--reconcile-every', '0'], {
    env: childEnv({
      DATABASE_URL: databaseUrl,
      LEASH_HOME: '/nonexistent/leash-rest-home',
      LEASH_LOG: 'debug',
      ...env,
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr?.on('data', (c: Buffer) => {
      out += c.toString();
      const found = /serving MCP at (\S+)\/mcp/.exec(out)?.[1];
      if (found) resolve(found);
    });
    child.on('exit', (code) => reject(new Error(`leash serve exited ${String(code)}: ${out}`)));
  });
  return {
    child,
    url,
    port: Number(new URL(url).port),
    log: () => out,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((res) => child.once('exit', res));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Catches what an SDK throws as a value; with `seen`, keeps what the agent saw for a canary check. */
export async function caught(p: Promise<unknown>, seen?: string[]): Promise<Record<string, unknown>> {
  try {
    const ok = await p;
    seen?.push(JSON.stringify(ok));
    return { ok };
  } catch (error) {
    seen?.push(JSON.stringify(error), String(error));
    // SDK errors are objects; their fields are what the tests compare.
    return error as Record<string, unknown>;
  }
}

export interface AuditRowView {
  id: string;
  tool: string;
  door: string;
  operation: string | null;
  decision: string;
  reason: string | null;
  outcome: string;
  reserved_micros: number;
  cost_micros: number;
  usd_micros: number;
  http_status: number | null;
  metadata: Record<string, unknown>;
}

/** A key's audit rows, oldest first. */
export async function auditRows(pool: pg.Pool, keyId: string): Promise<AuditRowView[]> {
  const r = await pool.query<AuditRowView>(
    `select id, tool, door, operation, decision, reason, outcome, reserved_micros::float8 as reserved_micros,
            cost_micros::float8 as cost_micros, usd_micros::float8 as usd_micros, http_status, metadata
       from audit_log where key_id = $1 order by ts`,
    [keyId],
  );
  return r.rows;
}

/** A key's USD spend window today: spent and reserved micros (zeros when it has none). */
export async function keySpend(pool: pg.Pool, keyId: string): Promise<{ spent: number; reserved: number }> {
  const r = await pool.query<{ spent: number; reserved: number }>(
    `select coalesce(sum(spent_micros), 0)::float8 as spent, coalesce(sum(reserved_micros), 0)::float8 as reserved
       from spend_windows where scope = $1 and kind = 'usd_day'`,
    [`key:${keyId}`],
  );
  return r.rows[0] ?? { spent: 0, reserved: 0 };
}
