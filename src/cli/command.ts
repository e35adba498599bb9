import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Config } from '../config/config.js';
import type { Io } from './io.js';
import { alignHelp, closest, HELP_WIDTH, wrapText, type Column, type Style } from './output.js';

export type { Io } from './io.js';

/** Exit codes: what a script can branch on. `policies diff` and `policies test` also use 1 for "differs" / "denied". */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3, unavailable: 4 } as const;

/** The name of each exit code, as `--json` errors report it. */
export const EXIT_NAMES: Readonly<Record<number, string>> = {
  0: 'ok',
  1: 'failed',
  2: 'usage',
  3: 'not_found',
  4: 'database_unavailable',
};

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
  /** Lines under "Options:" in --help: "flags  description" (aligned for you); "  more" continues a line. */
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
  /** --json was given: data goes out as JSON, errors as JSON on stderr. */
  jsonMode: boolean;
  /** A warning for the person at the terminal (stderr, or a JSON line under --json). */
  warn(text: string): void;
  /**
   * A table that fits the terminal: columns hidden by priority (a line says so) and free text cut, ids and times
   * whole; every column with --wide or when piped. Coloured only on a TTY without NO_COLOR.
   */
  table(
    rows: Record<string, unknown>[],
    columns: readonly Column[],
    style?: (column: string, text: string) => Style | undefined,
  ): void;
  colour: boolean;
}

export interface CommandGroup {
  name: string;
  commands: Command[];
}

/** Options every command takes. */
export const GLOBAL_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  wide: { type: 'boolean' },
} as const satisfies Options;

/** Declares a command with its option types inferred. */
export function command<O extends Options>(spec: Command<O>): Command {
  return spec;
}

/** "Usage: leash …" wrapped to the help width, continuation lines under the command's first option. */
function usageLines(usage: string): string[] {
  const head = `Usage: leash ${usage}`.trimEnd();
  if (head.length <= HELP_WIDTH) return [head];
  // Continuation lines start under the first option, after "Usage: leash <group> <command> ".
  const lead = /^Usage: leash (?:[a-z-]+ ){0,2}/.exec(head)?.[0] ?? 'Usage: leash ';
  const indent = ' '.repeat(Math.min(lead.length, 30));
  const [first = '', ...rest] = wrapText(head.slice(lead.length), HELP_WIDTH - indent.length);
  return [lead + first, ...rest.map((l) => indent + l)];
}

export function helpText(cmd: Command): string {
  const lines = [...usageLines(cmd.usage), '', ...wrapText(cmd.summary, HELP_WIDTH), '', 'Options:'];
  const own = cmd.help ?? [];
  // A flag a command explains itself is not listed again among the ones every command takes.
  const mentions = (flag: string) => own.some((l) => new RegExp(`(^|[ ,])${flag}\\b`).test(l));
  const entries = [
    ...own,
    ...(mentions('--json') ? [] : ['--json  print JSON (errors as JSON on stderr)']),
    ...(mentions('--wide') ? [] : ['--wide  tables: every column in full, whatever the terminal width']),
    '-h, --help  show this help',
  ];
  lines.push(...alignHelp(entries));
  return lines.join('\n') + '\n';
}

export function groupHelp(group: CommandGroup, summary: string): string {
  return (
    [
      `Usage: leash ${group.name} <command> [options]`,
      '',
      ...wrapText(summary, HELP_WIDTH),
      '',
      'Commands:',
      ...alignHelp(group.commands.map((c) => `${c.name}  ${c.summary}`)),
      '',
      `Run 'leash ${group.name} <command> --help' for a command's options.`,
    ].join('\n') + '\n'
  );
}

/** Parses argv for one command; unknown options and wrong positional counts are usage errors. */
export function parseCommand(cmd: Command, argv: string[]) {
  const options = { ...cmd.options, ...GLOBAL_OPTIONS };
  try {
    const parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    const { min, max } = cmd.positionals ?? { min: 0, max: 0 };
    if (!parsed.values.help && (parsed.positionals.length < min || parsed.positionals.length > max)) {
      throw new CliError(`expected ${describeCount(min, max)}; usage: leash ${cmd.usage}`, EXIT.usage);
    }
    return parsed;
  } catch (error) {
    if (error instanceof CliError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    // Node says "Unknown option '--bogus'. To specify a positional argument…": keep the first sentence, add a guess.
    const unknown = /Unknown option '(--?[^']+)'/.exec(message)?.[1];
    if (unknown) {
      const names = Object.keys(options).map((o) => `--${o}`);
      const guess = closest(unknown.replace(/=.*$/, ''), names);
      throw new CliError(
        `Unknown option '${unknown}'${guess ? `; did you mean ${guess}?` : ''} (see 'leash ${cmd.usage
          .split(' ')
          .slice(0, cmd.name ? 2 : 1)
          .join(' ')} --help')`,
        EXIT.usage,
      );
    }
    throw new CliError(message.split('. To specify')[0] ?? message, EXIT.usage);
  }
}

function describeCount(min: number, max: number): string {
  if (max === 0) return 'no arguments';
  if (min === max) return `${min} argument${min === 1 ? '' : 's'}`;
  return `${min} to ${max} arguments`;
}

/** A whole number flag (a version, a count); anything else is a usage error naming the flag. */
export function intFlag(value: string | undefined, flag: string, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min)
    throw new CliError(
      `${flag} must be a whole number${min > 0 ? ` from ${min}` : ''}, got '${value}'`,
      EXIT.usage,
    );
  return n;
}

export { table } from './output.js';
