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
/** A command group, loaded only when it runs: `leash keys revoke` must not pay for the vendor SDKs. */
interface LazyGroup {
  name: string;
  summary: string;
  load: () => Promise<CommandGroup>;
}

const GROUPS: LazyGroup[] = [
  {
    name: 'init',
    summary: 'Set up LEASH_HOME, master key and database (--demo: demo policy + key)',
    load: async () => (await import('./init.js')).initCommands,
  },
  {
    name: 'serve',
    summary: 'Serve MCP over Streamable HTTP (agents connect with their vault key)',
    load: async () => (await import('./serve.js')).serveCommands,
  },
  {
    name: 'mcp',
    summary: 'Serve MCP over stdio for LEASH_VAULT_KEY',
    load: async () => (await import('./mcp.js')).mcpCommands,
  },
  {
    name: 'demo',
    summary: 'Start a sandbox server with a demo policy and key (what npm start runs)',
    load: async () => (await import('./serve.js')).demoCommands,
  },
  {
    name: 'policies',
    summary: 'Policies: validate, apply, list, show, diff',
    load: async () => (await import('./policies.js')).policiesCommands,
  },
  {
    name: 'keys',
    summary: 'Vault keys: create, list, show, revoke, rotate',
    load: async () => (await import('./keys.js')).keysCommands,
  },
  {
    name: 'vendors',
    summary: 'Vendor credentials: set, list, remove (secrets never printed)',
    load: async () => (await import('./vendors.js')).vendorsCommands,
  },
  {
    name: 'audit',
    summary: 'The audit log: tail (-f to follow live) and query',
    load: async () => (await import('./audit.js')).auditCommands,
  },
  {
    name: 'spend',
    summary: 'Spend and requests by agent, key, policy or day, with caps and what is left',
    load: async () => (await import('./spend.js')).spendCommands,
  },
  {
    name: 'reconcile',
    summary: 'Settle pending/unknown audit rows and late vendor prices',
    load: async () => (await import('./reconcile.js')).reconcileCommands,
  },
  {
    name: 'db',
    summary: 'Manage the database: start, stop, status, migrate, url',
    load: async () => (await import('./db.js')).dbCommands,
  },
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
  const lazy = GROUPS.find((g) => g.name === groupName);
  if (!lazy) {
    io.stderr(`leash: unknown command '${groupName}'. Run 'leash --help' for the list.\n`);
    return EXIT.usage;
  }
  const group = await lazy.load();
  // A group with one unnamed command (e.g. `leash mcp`) takes its options directly.
  const single =
    group.commands.length === 1 && group.commands[0]?.name === '' ? group.commands[0] : undefined;
  const [cmdName, ...args] = single ? ['', ...rest] : rest;
  if (!single && (!cmdName || cmdName === '--help' || cmdName === '-h')) {
    io.stdout(groupHelp(group, lazy.summary));
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
