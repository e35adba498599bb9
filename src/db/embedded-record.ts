// What leash records about its embedded server: server.json (how to reach it, with its passwords) and the start lock.
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Place } from './embedded-place.js';
import { pidAlive } from './postmaster.js';

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

/** Failure to start, stop or reach the embedded server; the message says what was attempted. */
export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

/** LEASH_HOME/pg: what leash keeps about its server (server.json, the start lock), wherever the cluster is. */
export interface Meta {
  home: string;
  meta: string;
  lock: string;
  secret: string;
}

/** Where the cluster lives (embedded-place.ts): in LEASH_HOME/pg/data, or as root possibly under /var/lib/leash. */
export type Paths = Meta & Place;

export function metaFor(home: string): Meta {
  const meta = join(home, 'pg');
  return { home, meta, lock: join(meta, 'start.lock'), secret: join(meta, 'server.json') };
}

/** A server.json written before leash had an owner role holds only `url` (the superuser); accept both. */
export type StoredServer = Omit<EmbeddedServer, 'adminUrl' | 'database'> & Partial<EmbeddedServer>;

export async function readServer(paths: Meta): Promise<StoredServer | undefined> {
  try {
    const stored = JSON.parse(await readFile(paths.secret, 'utf8')) as StoredServer; // written only by this module
    return typeof stored.url === 'string' && typeof stored.port === 'number' ? stored : undefined;
  } catch {
    return undefined;
  }
}

export const current = (s: StoredServer | undefined): s is EmbeddedServer =>
  typeof s?.adminUrl === 'string' && typeof s.database === 'string';

/** This LEASH_HOME's recorded server, without starting or checking it (pools re-read it after losing it). */
export async function readEmbedded(home: string): Promise<EmbeddedServer | undefined> {
  const stored = await readServer(metaFor(home));
  return current(stored) ? stored : undefined;
}

/** Replaces server.json in one rename, so a process re-reading it never sees half a file. */
export async function writeServer(paths: Meta, server: EmbeddedServer): Promise<void> {
  const tmp = `${paths.secret}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(server, null, 2), { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, paths.secret);
}

/** A cross-process lock: an exclusive-create file holding the owner's pid; stale owners are broken. */
export async function withLock<T>(paths: Meta, fn: () => Promise<T>): Promise<T> {
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
