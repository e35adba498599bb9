import { ConfigError, loadConfig, type Config } from '../config/config.js';
import {
  CliError,
  EXIT,
  groupHelp,
  helpText,
  parseCommand,
  type CommandGroup,
  type Context,
  type Io,
} from './command.js';
import { dbCommands } from './db.js';
import { demoCommands, mcpCommands, reconcileCommands, serveCommands } from './serve.js';
import { initCommands } from './init.js';
import { auditCommands } from './audit.js';
import { spendCommands } from './spend.js';
import { keysCommands } from './keys.js';
import { policiesCommands } from './policies.js';
import { vendorsCommands } from './vendors.js';

const GROUPS: CommandGroup[] = [
  initCommands,
  serveCommands,
  mcpCommands,
  demoCommands,
  policiesCommands,
  keysCommands,
  vendorsCommands,
  auditCommands,
  spendCommands,
  reconcileCommands,
  dbCommands,
];

const VERSION = '0.1.0';

function rootHelp(): string {
  const width = Math.max(...GROUPS.map((g) => g.name.length));
  return (
    [
      'leash — governed vendor tools for AI agents (MCP server, policies, budgets, audit)',
      '',
      'Usage: leash <command> [options]',
      '',
      'Commands:',
      ...GROUPS.map((g) => `  ${g.name.padEnd(width)}  ${g.summary}`),
      '',
      "Run 'leash <command> --help' for more. Global: --version, --help.",
    ].join('\n') + '\n'
  );
}

function defaultIo(): Io {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    env: process.env,
    isTTY: Boolean(process.stdout.isTTY),
    stdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
  };
}

/** Runs the `leash` command line; returns the exit code. Never throws. */
export async function main(argv: string[], io: Io = defaultIo()): Promise<number> {
  let config: Config | undefined;
  const ctx: Context = {
    io,
    config: () => (config ??= loadConfig(io.env)),
    print: (text) => io.stdout(text.endsWith('\n') ? text : text + '\n'),
    json: (data) => io.stdout(JSON.stringify(data, null, 2) + '\n'),
  };
  const [groupName, ...rest] = argv;
  if (!groupName || groupName === '--help' || groupName === '-h' || groupName === 'help') {
    io.stdout(rootHelp());
    return groupName ? EXIT.ok : EXIT.usage;
  }
  if (groupName === '--version' || groupName === '-v') {
    io.stdout(`leash ${VERSION}\n`);
    return EXIT.ok;
  }
  const group = GROUPS.find((g) => g.name === groupName);
  if (!group) {
    io.stderr(`leash: unknown command '${groupName}'. Run 'leash --help' for the list.\n`);
    return EXIT.usage;
  }
  // A group with one unnamed command (e.g. `leash mcp`) takes its options directly.
  const single =
    group.commands.length === 1 && group.commands[0]?.name === '' ? group.commands[0] : undefined;
  const [cmdName, ...args] = single ? ['', ...rest] : rest;
  if (!single && (!cmdName || cmdName === '--help' || cmdName === '-h')) {
    io.stdout(groupHelp(group));
    return cmdName ? EXIT.ok : EXIT.usage;
  }
  const cmd = single ?? group.commands.find((c) => c.name === cmdName);
  if (!cmd) {
    io.stderr(`leash ${group.name}: unknown command '${cmdName ?? ''}'. Run 'leash ${group.name} --help'.\n`);
    return EXIT.usage;
  }
  try {
    const { values, positionals } = parseCommand(cmd, args);
    if (values.help) {
      io.stdout(helpText(cmd));
      return EXIT.ok;
    }
    const code = await cmd.run(ctx, values, positionals);
    return code ?? EXIT.ok;
  } catch (error) {
    return reportError(io, `${group.name}${cmd.name ? ' ' + cmd.name : ''}`, error);
  }
}

function reportError(io: Io, where: string, error: unknown): number {
  if (error instanceof CliError) {
    io.stderr(`leash ${where}: ${error.message}\n`);
    return error.exitCode;
  }
  if (error instanceof ConfigError) {
    io.stderr(`leash: ${error.message}\n`);
    return EXIT.usage;
  }
  const name = error instanceof Error ? error.name : 'Error';
  const message = error instanceof Error ? error.message : String(error);
  // Known failure classes carry readable, secret-free messages; anything else is summarised.
  const known = ['EmbeddedPostgresError', 'MigrationError', 'PolicyFileError', 'CredentialError', 'KeyError'];
  if (known.includes(name)) {
    io.stderr(`leash ${where}: ${message}\n`);
    return EXIT.failure;
  }
  const code = (error as { code?: unknown }).code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === '57P01' || code === '28P01') {
    io.stderr(
      `leash ${where}: cannot reach the database (${String(code)}); check DATABASE_URL or run 'leash db start'\n`,
    );
    return EXIT.unavailable;
  }
  io.stderr(`leash ${where}: internal error (${name}); set LEASH_LOG=debug for details\n`);
  if (io.env.LEASH_LOG === 'debug' && error instanceof Error && error.stack) io.stderr(error.stack + '\n');
  return EXIT.failure;
}
