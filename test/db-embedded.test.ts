// Covers the shared embedded PostgreSQL: concurrent starts share one server; status, stop and start.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { destroyEmbedded, embeddedStatus } from '../src/db/embedded.js';
import { childEnv, runLeash } from './support/cli.js';

let home: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'leash-embedded-'));
  env = childEnv({ LEASH_HOME: home });
});

afterAll(async () => {
  await destroyEmbedded(home).finally(() => rm(home, { recursive: true, force: true }));
});

const parse = (s: string) =>
  JSON.parse(s) as { running: boolean; port?: number; pid?: number; data_dir: string };

describe('leash db (embedded)', () => {
  it('reports a stopped, uninitialised server before anything starts it', async () => {
    // A home of its own, so nothing the other tests start is there, whichever runs first.
    const fresh = await mkdtemp(join(tmpdir(), 'leash-embedded-fresh-'));
    try {
      const r = await runLeash(['db', 'status', '--json'], childEnv({ LEASH_HOME: fresh }));
      expect(r.code).toBe(4);
      expect(parse(r.stdout)).toMatchObject({ running: false, initialised: false });
    } finally {
      await destroyEmbedded(fresh).finally(() => rm(fresh, { recursive: true, force: true }));
    }
  });

  it('leaves exactly one running server when two `db start` run at the same moment', async () => {
    // The two race from nothing (initdb, then start): in the file's home, whose server the tests after this one use,
    // unless something started it already (then in a home of its own).
    const fresh = !(await embeddedStatus(home)).initialised;
    const own = fresh ? home : await mkdtemp(join(tmpdir(), 'leash-embedded-race-'));
    const ownEnv = childEnv({ LEASH_HOME: own });
    try {
      const [a, b] = await Promise.all([
        runLeash(['db', 'start', '--json'], ownEnv),
        runLeash(['db', 'start', '--json'], ownEnv),
      ]);
      expect(a.code, a.stderr).toBe(0);
      expect(b.code, b.stderr).toBe(0);
      const sa = parse(a.stdout);
      const sb = parse(b.stdout);
      expect(sa.port).toBeGreaterThan(0);
      expect(sb.port).toBe(sa.port);
      expect(sb.pid).toBe(sa.pid);
      const pidFile = await readFile(join(sa.data_dir, 'postmaster.pid'), 'utf8');
      expect(Number.parseInt(pidFile, 10)).toBe(sa.pid);
      const status = await runLeash(['db', 'status', '--json'], ownEnv);
      expect(status.code).toBe(0);
      expect(parse(status.stdout)).toMatchObject({ running: true, port: sa.port, pid: sa.pid });
    } finally {
      if (!fresh) await destroyEmbedded(own).finally(() => rm(own, { recursive: true, force: true }));
    }
    // initdb and a server start in new processes: slow on a busy machine.
  }, 300_000);

  it('never prints the database password in status output', async () => {
    const started = await runLeash(['db', 'start'], env); // running, whichever test ran first
    expect(started.code, started.stderr).toBe(0);
    const url = await runLeash(['db', 'url', '--json'], env);
    const password = new URL((JSON.parse(url.stdout) as { url: string }).url).password;
    expect(password.length).toBeGreaterThan(10);
    const status = await runLeash(['db', 'status', '--json'], env);
    expect(status.stdout).not.toContain(password);
    expect(status.stdout).toContain('****');
    // May be the first to start the server (initdb): slow on a busy machine.
  }, 300_000);

  it('stops the server with `db stop` and starts it again with `db start` on the same port', async () => {
    const started = await runLeash(['db', 'start'], env); // running, whichever test ran first
    expect(started.code, started.stderr).toBe(0);
    const before = parse((await runLeash(['db', 'status', '--json'], env)).stdout).port;
    expect(before).toBeGreaterThan(0);
    const stop = await runLeash(['db', 'stop'], env);
    expect(stop.code, stop.stderr).toBe(0);
    expect(stop.stdout).toContain('stopped');
    const down = await runLeash(['db', 'status', '--json'], env);
    expect(down.code).toBe(4);
    expect(parse(down.stdout)).toMatchObject({ running: false, initialised: true });
    const again = await runLeash(['db', 'stop'], env);
    expect(again.stdout).toContain('was not running');
    const start = await runLeash(['db', 'start', '--json'], env);
    expect(start.code, start.stderr).toBe(0);
    expect(parse(start.stdout)).toMatchObject({ running: true, port: before });
    // Five leash processes, a server stop and start: slow on a busy machine.
  }, 300_000);

  it('answers --help and rejects unknown commands with a usage exit code', async () => {
    const help = await runLeash(['db', '--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: leash db');
    const bad = await runLeash(['db', 'explode'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("unknown command 'db explode'");
  });
});
