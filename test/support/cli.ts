// Runs the built `leash` binary as a separate process, the way users and agent hosts do.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const LEASH_BIN = fileURLToPath(new URL('../../bin/leash.js', import.meta.url));

export interface Spawned {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Spawns `leash <args>` and waits for it to exit. */
export function runLeash(args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LEASH_BIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** The environment a child leash should get: this process's, minus anything that points elsewhere. */
export function childEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('LEASH_') || k === 'DATABASE_URL') delete env[k];
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}
