// Embedded clusters whose LEASH_HOME is gone: under /var/lib/leash (their marker names a home that no longer
// exists), or still running on a data directory that was deleted with its home. `leash db status` lists them and
// `leash db destroy --orphans` removes them.
import { existsSync } from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { MARKER, readMarker, SHARED_ROOT } from './embedded-place.js';
import { embeddedPostmasters, endPostmaster, postmasterPid } from './postmaster.js';

export interface Orphan {
  /** What to remove: SHARED_ROOT/<hash>, or the deleted data directory a server still runs on. */
  dir: string;
  /** The LEASH_HOME it belonged to, when recorded. */
  home?: string;
  /** `home-gone`: its marker names a home that no longer exists; `data-deleted`: it runs on deleted files. */
  kind: 'home-gone' | 'data-deleted';
  /** Bytes on disk (for a deleted data directory: unknown, 0). */
  bytes: number;
  /** The postmaster's pid, when it is running. */
  pid?: number;
}

export interface SharedCluster {
  dir: string;
  home?: string;
  homeExists: boolean;
  pid?: number;
}

/** Bytes a tree takes on disk (allocated blocks, as `du` counts them). */
export async function diskUsage(path: string): Promise<number> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return 0;
  let total = st.blocks * 512;
  if (st.isDirectory()) {
    const entries = await readdir(path).catch(() => [] as string[]);
    for (const entry of entries) total += await diskUsage(join(path, entry));
  }
  return total;
}

/** Every cluster directory under SHARED_ROOT (binaries copied there, `native-*`, are not clusters). */
export async function sharedClusters(): Promise<SharedCluster[]> {
  const entries = await readdir(SHARED_ROOT, { withFileTypes: true }).catch(() => []);
  const clusters: SharedCluster[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() || entry.name.startsWith('native-')) continue;
    const dir = join(SHARED_ROOT, entry.name);
    const marker = await readMarker(dir);
    const pid = await postmasterPid(join(dir, 'data'));
    clusters.push({
      dir,
      ...(marker ? { home: marker.home } : {}),
      homeExists: marker ? existsSync(marker.home) : false,
      ...(pid ? { pid } : {}),
    });
  }
  return clusters;
}

/**
 * Clusters whose home is gone. A cluster under SHARED_ROOT without a marker is not one: an earlier leash made it
 * and its home is not recorded (it gets a marker when its home's leash next starts it).
 */
export async function findOrphans(): Promise<Orphan[]> {
  const orphans: Orphan[] = [];
  for (const c of await sharedClusters()) {
    if (!c.home || c.homeExists) continue;
    orphans.push({
      dir: c.dir,
      home: c.home,
      kind: 'home-gone',
      bytes: await diskUsage(c.dir),
      ...(c.pid ? { pid: c.pid } : {}),
    });
  }
  for (const p of await embeddedPostmasters()) {
    if (!p.deleted || orphans.some((o) => o.pid === p.pid)) continue;
    orphans.push({ dir: p.dataDir, kind: 'data-deleted', bytes: 0, pid: p.pid });
  }
  return orphans;
}

/**
 * Removes one orphan: stops its server if one runs (fast shutdown), then deletes its directory. Checks again
 * first that it is still an orphan (its home may have come back); returns false when it no longer is.
 */
export async function removeOrphan(orphan: Orphan): Promise<boolean> {
  if (orphan.kind === 'data-deleted') {
    const p = (await embeddedPostmasters()).find((m) => m.pid === orphan.pid && m.deleted);
    if (!p || p.dataDir !== orphan.dir) return false;
    await endPostmaster(p.pid);
    return true;
  }
  if (dirname(orphan.dir) !== SHARED_ROOT) return false;
  const marker = await readMarker(orphan.dir);
  if (!marker || existsSync(marker.home) || !existsSync(join(orphan.dir, MARKER))) return false;
  const pid = await postmasterPid(join(orphan.dir, 'data'));
  if (pid) await endPostmaster(pid);
  await rm(orphan.dir, { recursive: true, force: true });
  return true;
}
