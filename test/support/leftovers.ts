// What a test run leaves behind: embedded clusters of the temporary homes it made, still under /var/lib/leash or
// still running. The global set-up puts every temporary home of the run in one directory and sweeps it at the end.
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { sharedClusters } from '../../src/db/embedded-orphans.js';
import { embeddedPostmasters, endPostmaster, pidAlive } from '../../src/db/postmaster.js';

export interface RunHomes {
  /** Where this run's temporary homes go: the workers' TMPDIR. */
  dir: string;
  /**
   * Stops and removes what the run left (see sweepLeftovers) and deletes `dir`. Anything left fails the run
   * (exit code 1, each named on stderr) without stopping the rest of the teardown. Returns what was left.
   */
  finish(): Promise<string[]>;
}

/** In each run directory: the pid of the vitest that made it. */
export const OWNER = 'vitest.pid';

/**
 * A fresh directory for the run's temporary homes (TMPDIR is put back by finish). First clears up after runs that
 * were killed before their teardown: their directories, clusters and servers, once their vitest is gone.
 */
export async function runHomes(): Promise<RunHomes> {
  await sweepAbandonedRuns();
  const previous = process.env.TMPDIR;
  const dir = await mkdtemp(join(tmpdir(), 'leash-run-'));
  await writeFile(join(dir, OWNER), String(process.pid));
  // Search-only for others: the database's OS user must pass through to the homes below (it cannot list them).
  await chmod(dir, 0o711);
  return {
    dir,
    async finish() {
      const left = await sweepLeftovers(dir);
      await rm(dir, { recursive: true, force: true });
      if (previous === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = previous;
      if (left.length) {
        process.exitCode = 1;
        console.error(
          `The test run left ${left.length} embedded cluster(s) behind (now stopped and removed); a test that ` +
            `makes a home must destroy its cluster in afterAll or finally:\n  ${left.join('\n  ')}`,
        );
      }
      return left;
    },
  };
}

/**
 * The embedded clusters of homes under `dir` that are still on disk under /var/lib/leash (their marker names such
 * a home) or still running (a postmaster on a data directory under `dir`). Each is stopped and removed; the
 * returned lines say what was found, so a run can fail on them.
 */
export async function sweepLeftovers(dir: string): Promise<string[]> {
  const under = (path: string | undefined) => path !== undefined && path.startsWith(dir + sep);
  const left: string[] = [];
  for (const c of await sharedClusters()) {
    if (!under(c.home)) continue;
    left.push(`${c.dir} (home ${c.home ?? '?'}${c.pid ? `, running as pid ${c.pid}` : ''})`);
    if (c.pid) await endPostmaster(c.pid);
    await rm(c.dir, { recursive: true, force: true });
  }
  for (const p of await embeddedPostmasters()) {
    if (!under(p.dataDir)) continue;
    left.push(`PostgreSQL pid ${p.pid} still running on ${p.dataDir}${p.deleted ? ' (deleted)' : ''}`);
    await endPostmaster(p.pid);
  }
  return left;
}

/** Run directories in `parent` whose vitest process no longer runs (killed, so no teardown): swept and removed. */
export async function sweepAbandonedRuns(parent = tmpdir()): Promise<void> {
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    if (!name.startsWith('leash-run-')) continue;
    const dir = join(parent, name);
    const owner = Number.parseInt(await readFile(join(dir, OWNER), 'utf8').catch(() => ''), 10);
    if (!Number.isInteger(owner) || owner <= 0 || pidAlive(owner)) continue;
    const left = await sweepLeftovers(dir);
    await rm(dir, { recursive: true, force: true });
    if (left.length) console.warn(`removed what a killed test run left in ${dir}:\n  ${left.join('\n  ')}`);
  }
}
