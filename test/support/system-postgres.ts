// Starts a throwaway PostgreSQL from the system's own binaries (Debian's /usr/lib/postgresql/<major>/bin) in a
// temporary directory, for running the database-facing tests against another server version than the embedded one.
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { osIds } from '../../src/db/embedded-programs.js';
import { freePort } from '../../bench/support.js';

const run = promisify(execFile);

/** Where Debian's postgresql-<major> package puts its binaries. */
export function systemPostgresBinDir(major: number): string {
  return `/usr/lib/postgresql/${major}/bin`;
}

/** Why the system's PostgreSQL `major` cannot be used here, or undefined when it can. */
export function systemPostgresMissing(major: number): string | undefined {
  const bin = systemPostgresBinDir(major);
  for (const tool of ['initdb', 'pg_ctl', 'postgres'])
    if (!existsSync(join(bin, tool)))
      return `${join(bin, tool)} not found (Debian's postgresql-${major} is not installed)`;
  return undefined;
}

export interface SystemPostgres {
  major: number;
  /** The bootstrap superuser's URL (database `postgres`). */
  adminUrl: string;
  /** Stops the server and removes its directory; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * initdb's a cluster of the system's PostgreSQL `major` in a new temporary directory (owned by the postgres OS
 * user when running as root: Postgres refuses root, as the embedded server does) and starts it on a free loopback
 * port, no Unix socket. The directory is removed by `stop()`, and by an exit hook if the process ends first.
 */
export async function startSystemPostgres(major: number): Promise<SystemPostgres> {
  const missing = systemPostgresMissing(major);
  if (missing) throw new Error(missing);
  const bin = systemPostgresBinDir(major);
  const ids = await osIds();
  const dir = await mkdtemp(join(tmpdir(), `leash-pg${major}-`));
  const data = join(dir, 'data');
  const log = join(dir, 'postgres.log');
  // Only PATH and the C locale: nothing of the test run's environment reaches the server.
  const as = { ...(ids ?? {}), env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } };
  let stopped = false;
  const stopNow = () => {
    if (stopped) return;
    stopped = true;
    process.off('exit', stopNow);
    try {
      execFileSync(join(bin, 'pg_ctl'), ['stop', '-w', '-m', 'immediate', '-D', data], {
        ...as,
        stdio: 'ignore',
      });
    } catch {
      // not running (never started, or already gone)
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // A run that ends without calling stop() (a crash, process.exit) still leaves nothing behind.
  process.on('exit', stopNow);
  try {
    if (ids) await chown(dir, ids.uid, ids.gid);
    const password = randomBytes(18).toString('base64url');
    const pwfile = join(dir, 'pwfile');
    await writeFile(pwfile, password + '\n', { mode: 0o600 });
    if (ids) await chown(pwfile, ids.uid, ids.gid);
    await run(
      join(bin, 'initdb'),
      [
        `--pgdata=${data}`,
        '--auth=scram-sha-256',
        '--username=leash',
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--no-sync', // a throwaway cluster
      ],
      as,
    ).catch((error: unknown) => {
      const stderr = error instanceof Error && 'stderr' in error ? String(error.stderr) : String(error);
      throw new Error(`initdb (PostgreSQL ${major}) failed: ${stderr}`, { cause: error });
    });
    await rm(pwfile, { force: true });
    // Another process can take the free port before the server binds it: try a few.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const options = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200`;
      try {
        await run(join(bin, 'pg_ctl'), ['start', '-w', '-t', '60', '-D', data, '-l', log, '-o', options], as);
      } catch (error) {
        const tail = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ');
        if (attempt < 3 && /could not bind|already in use/i.test(tail)) continue;
        throw new Error(`could not start PostgreSQL ${major} in ${data}: ${tail || String(error)}`, {
          cause: error,
        });
      }
      const adminUrl = `postgres://leash:${password}@127.0.0.1:${port}/postgres`;
      return { major, adminUrl, stop: () => Promise.resolve(stopNow()) };
    }
  } catch (error) {
    stopNow();
    throw error;
  }
}
