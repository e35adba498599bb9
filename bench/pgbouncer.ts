// Starts a real PgBouncer (the system's, e.g. Debian's pgbouncer package) in transaction pooling mode in front of
// one database (test/pgbouncer.test.ts, the scale bench's --pgbouncer), configured in a temporary directory that is
// removed when it stops.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { chown, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { osIds } from '../src/db/embedded-programs.js';
import { freePort } from './support.js';

/** The PgBouncer binary: PGBOUNCER, else Debian's /usr/sbin/pgbouncer. */
export function pgbouncerPath(): string {
  return process.env.PGBOUNCER ?? '/usr/sbin/pgbouncer';
}

/** Why PgBouncer cannot be used here, or undefined when it can. */
export function pgbouncerMissing(): string | undefined {
  const path = pgbouncerPath();
  return existsSync(path) ? undefined : `${path} not found (install Debian's pgbouncer, or set PGBOUNCER)`;
}

/** `PgBouncer 1.18.0` → 1.18.0, from `pgbouncer --version`. */
export function pgbouncerVersion(): string {
  const out = execFileSync(pgbouncerPath(), ['--version'], { encoding: 'utf8' });
  return /PgBouncer (\S+)/.exec(out)?.[1] ?? 'unknown';
}

export interface PgBouncer {
  version: string;
  /** The upstream URL's database through PgBouncer, as the same user and password. */
  url: string;
  /** Another database of the same server through PgBouncer. */
  urlFor(database: string): string;
  /** Stops PgBouncer and removes its directory; safe to call twice. */
  stop(): Promise<void>;
}

/** Whether `version` (1.18.0, say) is at least major.minor. */
function atLeast(version: string, major: number, minor: number): boolean {
  const [ma = 0, mi = 0] = version.split('.').map(Number);
  return ma > major || (ma === major && mi >= minor);
}

const quote = (s: string) => `"${s.replaceAll('"', '""')}"`;

/**
 * Runs PgBouncer in front of `upstreamUrl`'s server (any of its databases) with `pool_mode = transaction` and at
 * most `poolSize` server connections per database, so that many client connections share few server sessions.
 * Clients log in with the upstream URL's user and password (a userlist in the temporary directory); PgBouncer logs
 * in to Postgres the same way.
 */
export async function startPgBouncer(upstreamUrl: string, o: { poolSize: number }): Promise<PgBouncer> {
  const missing = pgbouncerMissing();
  if (missing) throw new Error(missing);
  const version = pgbouncerVersion();
  const upstream = new URL(upstreamUrl);
  const user = decodeURIComponent(upstream.username);
  const password = decodeURIComponent(upstream.password);
  // PgBouncer refuses to run as root: as root it runs as the OS user the embedded Postgres runs as.
  const ids = await osIds();
  const dir = await mkdtemp(join(tmpdir(), 'leash-pgbouncer-'));
  if (ids) await chown(dir, ids.uid, ids.gid);
  const remove = () => rmSync(dir, { recursive: true, force: true });
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const ini = join(dir, 'pgbouncer.ini');
    const userlist = join(dir, 'userlist.txt');
    await writeFile(userlist, `${quote(user)} ${quote(password)}\n`, { mode: 0o600 });
    await writeFile(
      ini,
      [
        '[databases]',
        // Any database name a client asks for, on the upstream server.
        `* = host=${upstream.hostname} port=${upstream.port || '5432'}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir =',
        'auth_type = scram-sha-256',
        `auth_file = ${userlist}`,
        'pool_mode = transaction',
        `default_pool_size = ${o.poolSize}`,
        'min_pool_size = 0',
        'reserve_pool_size = 0',
        'max_client_conn = 500',
        // 1.21+ can track protocol-level prepared statements (on by default from 1.24); leash must work either way.
        ...(atLeast(version, 1, 21) ? ['max_prepared_statements = 100'] : []),
        // Logs go to stderr, where start-up is awaited; only what matters.
        'log_connections = 0',
        'log_disconnections = 0',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    if (ids) for (const file of [ini, userlist]) await chown(file, ids.uid, ids.gid);
    const child = spawn(pgbouncerPath(), [ini], {
      ...(ids ?? {}),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // Up once it says so; a bind failure or a bad config ends the process instead.
    const up = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 30_000);
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (chunk: string) => {
        log = (log + chunk).slice(-8_000);
        if (/process up/.test(log)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      void exited.then(() => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!up) {
      child.kill('SIGKILL');
      await exited;
      if (attempt < 3 && /Address already in use/i.test(log)) continue;
      remove();
      throw new Error(`PgBouncer ${version} did not start: ${log.trim().split('\n').slice(-3).join(' | ')}`);
    }
    child.stderr.resume(); // keep draining, so PgBouncer never blocks on a full pipe
    // A run that dies first leaves no PgBouncer (or its directory) behind.
    const kill = () => {
      child.kill('SIGKILL');
      remove();
    };
    process.on('exit', kill);
    const urlFor = (database: string) => {
      const url = new URL(upstreamUrl);
      url.hostname = '127.0.0.1';
      url.port = String(port);
      url.pathname = `/${database}`;
      return url.toString();
    };
    let stopped: Promise<void> | undefined;
    return {
      version,
      url: urlFor(upstream.pathname.slice(1)),
      urlFor,
      stop: () =>
        (stopped ??= (async () => {
          process.off('exit', kill);
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGTERM'); // immediate shutdown
            await exited;
          }
          remove();
        })()),
    };
  }
}
