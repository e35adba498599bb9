import type { Config } from './config.js';

export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

const LEVELS = { silent: 0, error: 1, info: 2, debug: 3 } as const;

/** JSON lines on stderr: under stdio, stdout is the MCP protocol and must carry nothing else. */
export function createLogger(
  config: Pick<Config, 'logLevel'>,
  write: (line: string) => void = (l) => process.stderr.write(l),
): Logger {
  const level = LEVELS[config.logLevel];
  const emit = (lvl: keyof typeof LEVELS, msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS[lvl] > level) return;
    write(JSON.stringify({ ts: new Date().toISOString(), level: lvl, msg, ...fields }) + '\n');
  };
  return {
    error: (m, f) => emit('error', m, f),
    info: (m, f) => emit('info', m, f),
    debug: (m, f) => emit('debug', m, f),
  };
}

/** A name for logs that carries no message (messages can hold URLs with secrets). */
export function errorName(error: unknown): string {
  if (!(error instanceof Error)) return 'unknown';
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? `${error.name} ${code}` : error.name;
}
