// Where an embedded cluster lives. Inside LEASH_HOME (`pg/data`) whenever the OS user Postgres runs as can reach
// it, so a volume mounted at LEASH_HOME keeps the audit log; as root with a home that user cannot reach (under
// /root, mode 700), under /var/lib/leash/<hash> with a marker naming the home, so clusters whose home is gone
// can be listed and removed. Clusters earlier versions put under /var/lib/leash are found there first.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, type Stats } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, parse, sep } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where clusters go (as root) when their home is out of the database user's reach. */
export const SHARED_ROOT = '/var/lib/leash';
/** In each cluster directory under SHARED_ROOT: which LEASH_HOME it belongs to, and why it is not in there. */
export const MARKER = 'leash-home.json';

export interface OsIds {
  uid: number;
  gid: number;
}

export interface Place {
  dataDir: string;
  log: string;
  /** SHARED_ROOT/<hash> when the cluster lives there (destroy removes it whole); absent inside LEASH_HOME. */
  shared?: string;
  /** Why the cluster is outside LEASH_HOME, when it is. */
  note?: string;
}

export interface Marker {
  home: string;
  created_at: string;
  reason?: string;
}

const LEGACY_NOTE =
  'an earlier leash made it there (as root it kept every cluster under /var/lib/leash) and it stays, so a volume mounted at LEASH_HOME does not hold this data';

/** The cluster directory of a home under SHARED_ROOT (the same hash earlier versions used). */
export function sharedDirOf(home: string): string {
  return join(SHARED_ROOT, createHash('sha256').update(home).digest('hex').slice(0, 16));
}

/** LEASH_HOME/pg/data, where a cluster lives whenever it can. */
export function inHomePlace(home: string): Place {
  return { dataDir: join(home, 'pg', 'data'), log: join(home, 'pg', 'postgres.log') };
}

function inShared(dir: string, note: string): Place {
  return { dataDir: join(dir, 'data'), log: join(dir, 'postgres.log'), shared: dir, note };
}

export async function readMarker(dir: string): Promise<Marker | undefined> {
  try {
    const m = JSON.parse(await readFile(join(dir, MARKER), 'utf8')) as Partial<Marker>; // written only below
    return typeof m.home === 'string' ? { created_at: '', ...m, home: m.home } : undefined;
  } catch {
    return undefined;
  }
}

async function writeMarker(dir: string, marker: Marker): Promise<void> {
  await writeFile(join(dir, MARKER), JSON.stringify(marker, null, 2) + '\n', { mode: 0o644 });
}

/**
 * The cluster this home already has: under SHARED_ROOT first (as root: where earlier versions put it, or where a
 * home out of reach keeps it), then inside the home. A shared one without a marker gets one (`adopt`).
 */
export async function findPlace(home: string, asRoot: boolean, adopt = false): Promise<Place | undefined> {
  if (asRoot) {
    const dir = sharedDirOf(home);
    if (existsSync(dir)) {
      const marker = await readMarker(dir);
      if (!marker && adopt)
        await writeMarker(dir, { home, created_at: new Date().toISOString(), reason: LEGACY_NOTE });
      return inShared(dir, marker?.reason ?? LEGACY_NOTE);
    }
  }
  const own = inHomePlace(home);
  return existsSync(own.dataDir) ? own : undefined;
}

/** As root, where a new cluster would go, without changing anything (`ids`: the OS user, when it exists yet). */
export async function plannedPlace(home: string, ids: OsIds | undefined): Promise<Place> {
  if (!ids) return inHomePlace(home);
  const blocked = await firstBlocked(dirname(home), ids);
  return blocked ? inShared(sharedDirOf(home), unreachable(home, blocked)) : inHomePlace(home);
}

/** Can a process with exactly these ids (no supplementary groups, as spawn sets them) search `dir`? */
async function searchable(dir: string, ids: OsIds): Promise<boolean> {
  return run('test', ['-x', dir], { uid: ids.uid, gid: ids.gid })
    .then(() => true)
    .catch(() => false);
}

/** The first directory on the way to `dir` (itself included) the user cannot search, or undefined. */
async function firstBlocked(dir: string, ids: OsIds): Promise<string | undefined> {
  if (await searchable(dir, ids)) return undefined;
  const { root } = parse(dir);
  let path = root;
  for (const part of dir.slice(root.length).split(sep).filter(Boolean)) {
    path = join(path, part);
    if (!existsSync(path)) return path;
    if (!(await searchable(path, ids))) return path;
  }
  return dir;
}

function unreachable(home: string, blocked: string): string {
  return `the database's OS user cannot reach ${home} (${blocked} is closed to it), so a volume mounted at LEASH_HOME will not hold this data`;
}

const canSearch = (st: Stats, ids: OsIds) =>
  Boolean(st.mode & (st.uid === ids.uid ? 0o100 : st.gid === ids.gid ? 0o010 : 0o001));

interface Previous {
  dir: string;
  gid: number;
  mode: number;
}

/** Lets the database user through a directory leash owns (LEASH_HOME, LEASH_HOME/pg): its group, search only. */
async function letThrough(dir: string, ids: OsIds): Promise<Previous | undefined> {
  const st = await stat(dir);
  if (canSearch(st, ids)) return undefined;
  await chown(dir, st.uid, ids.gid);
  await chmod(dir, (st.mode & 0o7777) | 0o010);
  return { dir, gid: st.gid, mode: st.mode & 0o7777 };
}

/**
 * As root, keeps an in-home cluster reachable by the user that owns it: `leash init` (or an operator) may have
 * set LEASH_HOME back to 0700 since. Costs two stat calls when nothing needs changing.
 */
export async function keepReachable(home: string, place: Place): Promise<void> {
  if (place.shared) return;
  const owner = await stat(place.dataDir).catch(() => undefined);
  if (!owner || owner.uid === 0) return;
  const ids = { uid: owner.uid, gid: owner.gid };
  await letThrough(home, ids);
  await letThrough(join(home, 'pg'), ids);
}

/**
 * As root, where a new cluster for this home goes, made ready for `ids` to initialise: inside the home when that
 * user can search every directory above it (leash then opens the home and its `pg` folder to the user's group,
 * search only, and gives it the data directory), else SHARED_ROOT/<hash> with a marker saying why.
 */
export async function choosePlace(home: string, ids: OsIds): Promise<Place> {
  const blocked = await firstBlocked(dirname(home), ids);
  let reason = blocked ? unreachable(home, blocked) : '';
  if (!blocked) {
    const own = inHomePlace(home);
    const changed: Previous[] = [];
    try {
      for (const dir of [home, join(home, 'pg')]) {
        const previous = await letThrough(dir, ids);
        if (previous) changed.push(previous);
      }
      await mkdir(own.dataDir, { mode: 0o700 });
      await chown(own.dataDir, ids.uid, ids.gid);
      // What counts is what the user can do, not what the mode bits promise (ACLs, root-squashed mounts).
      await run('test', ['-w', own.dataDir], { uid: ids.uid, gid: ids.gid });
      return own;
    } catch {
      await rm(own.dataDir, { recursive: true, force: true });
      for (const p of changed.reverse()) {
        await chown(p.dir, -1, p.gid).catch(() => undefined);
        await chmod(p.dir, p.mode).catch(() => undefined);
      }
      reason = `the database's OS user could not be given a directory inside ${home}, so a volume mounted at LEASH_HOME will not hold this data`;
    }
  }
  const dir = sharedDirOf(home);
  await mkdir(SHARED_ROOT, { recursive: true, mode: 0o755 });
  await chmod(SHARED_ROOT, 0o755);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chown(dir, ids.uid, ids.gid);
  await writeMarker(dir, { home, created_at: new Date().toISOString(), reason });
  return inShared(dir, reason);
}
