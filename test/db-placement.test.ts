// Covers where the embedded cluster lives (inside LEASH_HOME, or /var/lib/leash when its OS user cannot reach the
// home), `leash db destroy`, the clusters whose home is gone that `db status` lists, and the suite's own sweep.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, sep } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { main } from '../src/cli/main.js';
import { destroyEmbedded, ensureEmbedded, stopEmbedded } from '../src/db/embedded.js';
import { MARKER, sharedDirOf } from '../src/db/embedded-place.js';
import { embeddedPostmasters, pidAlive } from '../src/db/postmaster.js';
import { childEnv, runLeash } from './support/cli.js';
import { OWNER, sweepAbandonedRuns, sweepLeftovers } from './support/leftovers.js';

const asRoot = process.getuid?.() === 0;
const homes: string[] = [];
const dirs: string[] = [];

/** A new temporary directory, removed (with any cluster of a home in it) after the file. */
async function tempDir(prefix: string, mode?: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  if (mode !== undefined) await chmod(dir, mode);
  dirs.push(dir);
  return dir;
}

/** A LEASH_HOME that the database's OS user can reach (its parent, the run's TMPDIR, lets it through). */
async function reachableHome(): Promise<string> {
  const home = await tempDir('leash-place-');
  homes.push(home);
  return home;
}

/** A LEASH_HOME under a directory closed to everyone but root, as one under /root is. */
async function unreachableHome(): Promise<string> {
  const home = join(await tempDir('leash-locked-', 0o700), 'home');
  homes.push(home);
  return home;
}

/**
 * Homes whose cluster a test made and left running as it was (in the home, or marked under /var/lib/leash), for a
 * later test that needs such a cluster and destroys it: each initdb and start is seconds on a busy machine.
 */
const spare: Record<'reachable' | 'unreachable', string[]> = { reachable: [], unreachable: [] };

/** A home of this kind whose cluster runs: a spare one when a test left one, else a new one. */
async function runningCluster(kind: 'reachable' | 'unreachable'): Promise<string> {
  const home = spare[kind].pop() ?? (kind === 'reachable' ? await reachableHome() : await unreachableHome());
  await ensureEmbedded(home);
  return home;
}

afterAll(async () => {
  // Every cluster this file made, whatever a test did or failed to do; then the directories.
  await Promise.all(homes.map((home) => destroyEmbedded(home).catch(() => undefined)));
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

const leash = (args: string[], home: string) =>
  runLeash(args, childEnv({ LEASH_HOME: home, LEASH_LOG: 'error' }));

interface Status {
  running: boolean;
  initialised: boolean;
  pid?: number;
  data_dir: string;
  in_home: boolean;
  note?: string;
  orphans: { dir: string; home?: string; kind: string; bytes: number; pid?: number }[];
}
const statusOf = async (home: string) =>
  JSON.parse((await leash(['db', 'status', '--json'], home)).stdout) as Status;

/** Runs `leash` in-process with a terminal that answers `answer` to any question, recording the questions. */
async function atTerminal(args: string[], home: string, answer: string) {
  const out = { code: 0, stdout: '', stderr: '', asked: [] as string[] };
  out.code = await main(args, {
    stdout: (t) => (out.stdout += t),
    stderr: (t) => (out.stderr += t),
    env: { LEASH_HOME: home, LEASH_LOG: 'error', PATH: process.env.PATH ?? '' },
    isTTY: true,
    ask: (question) => {
      out.asked.push(question);
      return Promise.resolve(answer);
    },
  });
  return out;
}

describe('where the embedded cluster lives', () => {
  it('keeps the data inside LEASH_HOME when the database user can reach it, across init resetting the home to 0700', async () => {
    const home = await reachableHome();
    const init = await leash(['init', '--json'], home);
    expect(init.code, init.stderr).toBe(0);
    expect(JSON.parse(init.stdout)).toMatchObject({ data_dir: join(home, 'pg', 'data'), data_in_home: true });
    expect(init.stderr).not.toContain('outside LEASH_HOME');
    expect(existsSync(join(home, 'pg', 'data', 'PG_VERSION'))).toBe(true);
    if (asRoot) {
      expect(existsSync(sharedDirOf(home))).toBe(false);
      expect((await stat(join(home, 'pg', 'data'))).uid).not.toBe(0);
    }
    // `init` sets LEASH_HOME back to 0700; the server must still stop and start.
    expect((await leash(['db', 'stop'], home)).stdout).toContain('PostgreSQL stopped');
    const again = await leash(['init'], home);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`data         ${join(home, 'pg', 'data')}\n`);
    expect(await statusOf(home)).toMatchObject({ running: true, initialised: true, in_home: true });
    spare.reachable.push(home);
  }, 300_000);

  it.runIf(asRoot)(
    'falls back to /var/lib/leash for a home its user cannot reach (as under /root), says so at init, and marks the cluster',
    async () => {
      const home = await unreachableHome();
      const shared = sharedDirOf(home);
      const init = await leash(['init', '--json'], home);
      expect(init.code, init.stderr).toBe(0);
      expect(JSON.parse(init.stdout)).toMatchObject({ data_dir: join(shared, 'data'), data_in_home: false });
      const warning = (JSON.parse(init.stderr.trim()) as { warning: string }).warning;
      expect(warning).toContain(`${join(shared, 'data')}, outside LEASH_HOME`);
      expect(warning).toContain(`${basename(join(home, '..'))} is closed to it`);
      expect(warning).toContain('a volume mounted at LEASH_HOME will not hold this data');
      const marker = JSON.parse(await readFile(join(shared, MARKER), 'utf8')) as { home: string };
      expect(marker.home).toBe(home);
      const text = await leash(['init'], home);
      expect(text.stdout).toContain(`data         ${join(shared, 'data')} (outside LEASH_HOME)`);
      expect(text.stderr).toMatch(/^warning: the database's data is in .*, outside LEASH_HOME/);
      spare.unreachable.push(home);
    },
    120_000,
  );

  it.runIf(asRoot)(
    'keeps using a cluster an earlier leash put under /var/lib/leash once the home is reachable, marks it, and destroy removes it whole',
    async () => {
      const home = await runningCluster('unreachable');
      const shared = sharedDirOf(home);
      expect(await stopEmbedded(home)).toBe(true);
      // What an earlier version left: no marker, and nothing stops the home from being reachable now.
      await rm(join(shared, MARKER));
      await chmod(join(home, '..'), 0o755);
      const start = await leash(['db', 'start', '--json'], home);
      expect(start.code, start.stderr).toBe(0);
      expect(JSON.parse(start.stdout)).toMatchObject({ data_dir: join(shared, 'data'), in_home: false });
      expect(existsSync(join(home, 'pg', 'data'))).toBe(false);
      expect((JSON.parse(await readFile(join(shared, MARKER), 'utf8')) as { home: string }).home).toBe(home);
      expect((await statusOf(home)).note).toContain('an earlier leash');
      const destroy = await leash(['db', 'destroy', '--yes', '--json'], home);
      expect(destroy.code, destroy.stderr).toBe(0);
      expect(JSON.parse(destroy.stdout)).toMatchObject({ destroyed: true, data_dir: join(shared, 'data') });
      expect((JSON.parse(destroy.stdout) as { bytes: number }).bytes).toBeGreaterThan(1_000_000);
      expect(existsSync(shared)).toBe(false);
    },
    120_000,
  );
});

describe('leash db destroy', () => {
  it('refuses without --yes off a terminal, asks at one, and then deletes the cluster and stops its server', async () => {
    const home = await runningCluster('reachable');
    const { pid, data_dir: dataDir } = await statusOf(home);
    expect(pid).toBeGreaterThan(0);

    const piped = await leash(['db', 'destroy'], home);
    expect(piped.code).toBe(2);
    expect(piped.stderr).toContain('without --yes');
    const declined = await atTerminal(['db', 'destroy'], home, 'n');
    expect(declined.code).toBe(1);
    expect(declined.asked.join('')).toContain(dataDir);
    expect(declined.asked.join('')).toContain('audit log');
    expect(existsSync(join(dataDir, 'PG_VERSION'))).toBe(true);
    expect(await statusOf(home)).toMatchObject({ running: true, pid });

    const accepted = await atTerminal(['db', 'destroy'], home, 'y');
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stdout).toContain(`deleted the embedded PostgreSQL of ${home}`);
    expect(existsSync(dataDir)).toBe(false);
    expect(existsSync(join(home, 'pg', 'server.json'))).toBe(false);
    expect(existsSync(home)).toBe(true);
    await expect.poll(() => pidAlive(pid ?? 0), { timeout: 30_000 }).toBe(false);
    const after = await leash(['db', 'status', '--json'], home);
    expect(after.code).toBe(4);
    expect(JSON.parse(after.stdout)).toMatchObject({ running: false, initialised: false });
    const nothing = await leash(['db', 'destroy', '--yes', '--json'], home);
    expect(nothing.code).toBe(0);
    expect(JSON.parse(nothing.stdout)).toMatchObject({ destroyed: false });
  }, 300_000);

  it('answers --help', async () => {
    const help = await leash(['db', 'destroy', '--help'], '/nonexistent/leash-destroy-help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: leash db destroy [--orphans [dir…]] [--yes] [--json]');
    const usage = await leash(['db', 'destroy', 'somewhere'], '/nonexistent/leash-destroy-help');
    expect(usage.code).toBe(2);
  });
});

describe('clusters whose home is gone', () => {
  it('are listed by `db status` and deleted (their servers stopped) by `db destroy --orphans`', async () => {
    const looker = join(await tempDir('leash-looker-'), 'never-initialised');
    // One cluster under /var/lib/leash whose home was deleted, one deleted with its home while its server runs.
    const made = await Promise.all([
      runningCluster('reachable'),
      ...(asRoot ? [runningCluster('unreachable')] : []),
    ]);
    const gone: { dir: string; kind: string; pid: number }[] = [];
    for (const [i, home] of made.entries()) {
      const { pid } = await statusOf(home);
      await rm(i ? join(home, '..') : home, { recursive: true, force: true });
      const dir = i ? sharedDirOf(home) : join(home, 'pg', 'data');
      gone.push({ dir, kind: i ? 'home-gone' : 'data-deleted', pid: pid ?? 0 });
    }

    const listed = await statusOf(looker);
    for (const g of gone) expect(listed.orphans).toContainEqual(expect.objectContaining(g));
    const text = await leash(['db', 'status'], looker);
    expect(text.stdout).toContain('clusters whose LEASH_HOME is gone');
    for (const g of gone) expect(text.stdout).toContain(g.dir);
    expect(existsSync(looker)).toBe(false);

    const unknown = await leash(['db', 'destroy', '--orphans', '/var/lib/leash/not-one', '--yes'], looker);
    expect(unknown.code).toBe(3);
    // Named, so that orphans of anything else on this machine are left alone.
    const r = await leash(
      ['db', 'destroy', '--orphans', ...gone.map((g) => g.dir), '--yes', '--json'],
      looker,
    );
    expect(r.code, r.stderr).toBe(0);
    const { destroyed } = JSON.parse(r.stdout) as { destroyed: { dir: string }[] };
    expect(destroyed.map((d) => d.dir).sort()).toEqual(gone.map((g) => g.dir).sort());
    for (const g of gone) {
      expect(existsSync(g.dir)).toBe(false);
      expect(pidAlive(g.pid)).toBe(false);
    }
    const now = await statusOf(looker);
    for (const g of gone) expect(now.orphans.map((o) => o.dir)).not.toContain(g.dir);
  }, 300_000);
});

describe("the suite's sweep", () => {
  it('puts every temporary home of the run in one directory', () => {
    expect(basename(tmpdir())).toMatch(/^leash-run-/);
  });

  it.skipIf(process.env.DATABASE_URL)(
    "keeps the run's own cluster in that directory too, so a run killed before its teardown leaves it to the next run",
    async () => {
      const admin = new pg.Client({ connectionString: inject('adminUrl') });
      await admin.connect();
      const dataDir = await admin
        .query<{ data_directory: string }>('show data_directory')
        .then((r) => r.rows[0]?.data_directory ?? '')
        .finally(() => admin.end());
      // In its home, or under /var/lib/leash beside a marker naming the home.
      const marker = join(dirname(dataDir), MARKER);
      const home = existsSync(marker)
        ? (JSON.parse(await readFile(marker, 'utf8')) as { home: string }).home
        : dataDir;
      expect(home.startsWith(tmpdir() + sep), `${dataDir} (home ${home})`).toBe(true);
    },
  );

  it('removes the clusters a test left behind (running, or under /var/lib/leash) and those of a run killed before its teardown', async () => {
    const parent = await tempDir('leash-sweep-', 0o711);
    const live = join(parent, 'leash-run-live');
    const killed = join(parent, 'leash-run-killed');
    const gone = spawn(process.execPath, ['-e', '']);
    const deadPid = gone.pid ?? 0;
    await new Promise((r) => gone.once('exit', r));
    for (const [dir, owner] of [
      [live, process.pid],
      [killed, deadPid],
    ] as const) {
      await mkdir(dir, { mode: 0o711 });
      await chmod(dir, 0o711);
      await writeFile(join(dir, OWNER), String(owner));
    }
    const left = [join(live, 'in-home'), join(killed, 'home')];
    if (asRoot) {
      await mkdir(join(live, 'locked'), { mode: 0o700 });
      left.push(join(live, 'locked', 'home'));
    }
    homes.push(...left);
    const servers = await Promise.all(left.map((home) => ensureEmbedded(home)));
    expect(servers.map((s) => s.dataDir)).toEqual(
      [
        join(live, 'in-home', 'pg', 'data'),
        join(killed, 'home', 'pg', 'data'),
        join(sharedDirOf(join(live, 'locked', 'home')), 'data'),
      ].slice(0, left.length),
    );
    const running = async (dir: string) =>
      (await embeddedPostmasters()).filter((p) => p.dataDir.startsWith(dir + '/'));

    // A run killed before its teardown: the next run's set-up clears it; a run still going is left alone.
    await sweepAbandonedRuns(parent);
    expect(existsSync(killed)).toBe(false);
    expect(await running(killed)).toEqual([]);
    expect(await running(live)).toHaveLength(1);

    const found = await sweepLeftovers(live);
    expect(found.join('\n')).toContain(join(live, 'in-home', 'pg', 'data'));
    if (asRoot) expect(found.join('\n')).toContain(sharedDirOf(join(live, 'locked', 'home')));
    expect(await running(live)).toEqual([]);
    if (asRoot) expect(existsSync(sharedDirOf(join(live, 'locked', 'home')))).toBe(false);
    expect(await sweepLeftovers(live)).toEqual([]);
  }, 300_000);
});
