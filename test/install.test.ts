// The install path agent hosts rely on: a packed tarball installs into an empty prefix and runs, and no doc says `npx leash`.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** npm with this process's environment minus the `npm_*` settings an outer `npm test` injects. */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  return env;
}

describe('install path', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('packs a tarball that installs into an empty prefix and runs `leash --help`', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'leash-pack-'));
    dirs.push(dir);
    const env = npmEnv();
    // --ignore-scripts: `npm test` has already built dist/; the tarball must carry it.
    const packed = await run('npm', ['pack', ROOT, '--ignore-scripts', '--json', '--pack-destination', dir], {
      env,
      cwd: dir,
    });
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    expect(info?.files.map((f) => f.path)).toContain('dist/bundle/main.js');
    expect(info?.files.some((f) => f.path.startsWith('src/'))).toBe(false);
    const prefix = join(dir, 'prefix');
    await run(
      'npm',
      [
        'install',
        '-g',
        '--prefix',
        prefix,
        join(dir, info!.filename),
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
      ],
      { env, cwd: dir, timeout: 540_000 },
    );
    const help = await run(join(prefix, 'bin', 'leash'), ['--help'], { env, cwd: dir });
    expect(help.stdout).toContain('Usage: leash <command>');
    expect(help.stdout).toContain('mcp');
  }, 600_000);

  it('never tells an agent host to run `npx leash`', async () => {
    const mcp = JSON.parse(await readFile(join(ROOT, 'mcp.json'), 'utf8')) as {
      mcpServers: Record<string, { command?: string; args?: string[] }>;
    };
    for (const entry of Object.values(mcp.mcpServers)) expect(entry.command).not.toBe('npx');
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const commands = readme.split('\n').filter((l) => /npx\s+leash|"npx",\s*"args":\s*\["leash"/.test(l));
    // The only mention is the warning against it.
    expect(commands.every((l) => /never put `npx leash`|`npx leash` would fetch/.test(l))).toBe(true);
  });
});
