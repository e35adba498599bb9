// The embedded server's lifecycle: start it (or reuse the running one), report, stop and destroy it. Where the
// cluster lives, what leash records about it and how Postgres's programs are run are in the embedded-* files beside it.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { diskUsage } from './embedded-orphans.js';
import { OWNER_ROLE, provision } from './embedded-owner.js';
import { choosePlace, findPlace, inHomePlace, keepReachable, plannedPlace } from './embedded-place.js';
import {
  initialise,
  isRoot,
  osIds,
  OS_USER,
  PG_USER,
  runAs,
  startServer,
  usableBinDir,
} from './embedded-programs.js';
import {
  current,
  EmbeddedPostgresError,
  metaFor,
  readServer,
  withLock,
  writeServer,
  type EmbeddedServer,
  type Paths,
  type StoredServer,
} from './embedded-record.js';
import { endPostmaster, postmasterPid } from './postmaster.js';

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

const DATABASE = 'leash';

/** This home's cluster where it is; where it would go when there is none yet (nothing is created). */
async function locate(home: string): Promise<Paths> {
  const found = await findPlace(home, isRoot());
  const place = found ?? (isRoot() ? await plannedPlace(home, await osIds(false)) : inHomePlace(home));
  return { ...metaFor(home), ...place };
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

/**
 * The server's version when it answers, else undefined. A server that is down refuses at once; the bound is for one
 * that is up but slow to answer (a loaded machine), which must not be taken for down: `db start` would then try to
 * start a second server, and `db status` would report it stopped.
 */
async function canConnect(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 15_000 });
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
