import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Config } from '../config/config.js';

/** Exit codes: what a script can branch on. */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3, unavailable: 4 } as const;

/** Where a command writes; tests pass their own to run commands in-process. */
export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  stdin?: () => Promise<string>;
  isTTY: boolean;
}

/** A failure the user can act on: printed as one line, exits with `code`. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
  ) {
    super(message);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Command<O extends Options = Options> {
  name: string;
  summary: string;
  usage: string;
  /** Lines under "Options:" in --help. */
  help?: string[];
  options: O;
  positionals?: { min: number; max: number };
  run(ctx: Context, values: ParsedValues<O>, positionals: string[]): Promise<number | void>;
}

export type ParsedValues<O extends Options> = ReturnType<
  typeof parseArgs<{ options: O; allowPositionals: true }>
>['values'];

export interface Context {
  io: Io;
  config: () => Config;
  print(text: string): void;
  json(data: unknown): void;
}

export interface CommandGroup {
  name: string;
  commands: Command[];
}

/** Declares a command with its option types inferred. */
export function command<O extends Options>(spec: Command<O>): Command {
  return spec;
}

export function helpText(cmd: Command): string {
  const lines = [`Usage: leash ${cmd.usage}`.trimEnd(), '', cmd.summary];
  if (cmd.help?.length) lines.push('', 'Options:', ...cmd.help.map((l) => `  ${l}`));
  lines.push('  -h, --help  show this help');
  return lines.join('\n') + '\n';
}

export function groupHelp(group: CommandGroup, summary: string): string {
  const width = Math.max(...group.commands.map((c) => c.name.length));
  return (
    [
      `Usage: leash ${group.name} <command> [options]`,
      '',
      summary,
      '',
      'Commands:',
      ...group.commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
      '',
      `Run 'leash ${group.name} <command> --help' for a command's options.`,
    ].join('\n') + '\n'
  );
}

/** Parses argv for one command; unknown options and wrong positional counts are usage errors. */
export function parseCommand(cmd: Command, argv: string[]) {
  try {
    const parsed = parseArgs({
      args: argv,
      options: { ...cmd.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    const { min, max } = cmd.positionals ?? { min: 0, max: 0 };
    if (!parsed.values.help && (parsed.positionals.length < min || parsed.positionals.length > max)) {
      throw new CliError(`expected ${describeCount(min, max)}; usage: leash ${cmd.usage}`, EXIT.usage);
    }
    return parsed;
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError(error instanceof Error ? error.message : String(error), EXIT.usage);
  }
}

function describeCount(min: number, max: number): string {
  if (max === 0) return 'no arguments';
  if (min === max) return `${min} argument${min === 1 ? '' : 's'}`;
  return `${min} to ${max} arguments`;
}

/** Renders rows as an aligned text table for terminals. */
export function table(rows: Record<string, unknown>[], columns: string[]): string {
  if (rows.length === 0) return '(none)\n';
  const cell = (v: unknown): string => {
    if (v === null || v === undefined) return '-';
    if (v instanceof Date) return v.toISOString();
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
    return JSON.stringify(v);
  };
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return (
    [
      line(columns.map((c) => c.toUpperCase())),
      ...rows.map((r) => line(columns.map((c) => cell(r[c])))),
    ].join('\n') + '\n'
  );
}
