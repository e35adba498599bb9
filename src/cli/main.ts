import { ConfigError, loadConfig, type Config } from '../config/config.js';
import { catalogVendors } from '../../tools/index.js';
import {
  CliError,
  EXIT,
  EXIT_NAMES,
  groupHelp,
  helpText,
  parseCommand,
  type CommandGroup,
  type Context,
  type Io,
} from './command.js';
import {
  alignHelp,
  closest,
  colourWanted,
  HELP_WIDTH,
  outputWidth,
  paint,
  table,
  wrapText,
} from './output.js';
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
    load: async () => (await import('./demo.js')).demoCommands,
  },
  {
    name: 'policies',
    summary: 'Policies: validate, apply, list, show, diff, test (one call), replay (the audit log)',
    load: async () => (await import('./policies.js')).policiesCommands,
  },
  {
    name: 'keys',
    summary: 'Vault keys: create, list, show, revoke, rotate',
    load: async () => (await import('./keys.js')).keysCommands,
  },
  {
    name: 'operators',
    summary: 'Operators: add (prints a console / admin API token), list, remove',
    load: async () => (await import('./operators.js')).operatorsCommands,
  },
  {
    name: 'vendors',
    summary: 'Vendor credentials: set, list, check, remove (secrets never printed)',
    load: async () => (await import('./vendors.js')).vendorsCommands,
  },
  {
    name: 'audit',
    summary: 'The audit log: tail (-f to follow live) and query',
    load: async () => (await import('./audit.js')).auditCommands,
  },
  {
    name: 'approvals',
    summary: 'Calls held for a person: list, show, approve, deny',
    load: async () => (await import('./approvals.js')).approvalsCommands,
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
    summary: 'Manage the database: start, stop, status, migrate, url, destroy',
    load: async () => (await import('./db.js')).dbCommands,
  },
];

const VERSION = '0.1.0';

function rootHelp(): string {
  return (
    [
      ...wrapText(
        'leash — governed vendor tools for AI agents (MCP server, policies, budgets, audit)',
        HELP_WIDTH,
      ),
      '',
      'Usage: leash <command> [options]',
      '',
      'Commands:',
      ...alignHelp(GROUPS.map((g) => `${g.name}  ${g.summary}`)),
      '',
      ...wrapText(
        "Run 'leash <command> --help' for more. Every command takes --json; --version prints the version.",
        HELP_WIDTH,
      ),
      'Exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 database unavailable.',
    ].join('\n') + '\n'
  );
}

function defaultIo(): Io {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    env: process.env,
    isTTY: Boolean(process.stdout.isTTY),
    ...(process.stdout.columns ? { columns: process.stdout.columns } : {}),
    stdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
    ...(process.stdin.isTTY && process.stdout.isTTY ? { ask } : {}),
  };
}

/** One line from the terminal; the question goes to stderr, since stdout carries the command's data. */
async function ask(question: string): Promise<string> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}

/** Runs the `leash` command line; returns the exit code. Never throws. */
export async function main(argv: string[], io: Io = defaultIo()): Promise<number> {
  let config: Config | undefined;
  let wide = false;
  // Known before parsing, so that even a usage error is reported as JSON.
  const jsonMode = argv.includes('--json');
  const colour = colourWanted(io) && !jsonMode;
  const ctx: Context = {
    io,
    // The composition root: config learns the vendors' env vars and prices from the catalog, handed in here.
    config: () => (config ??= loadConfig(io.env, catalogVendors)),
    print: (text) => io.stdout(text.endsWith('\n') ? text : text + '\n'),
    json: (data) => io.stdout(JSON.stringify(data, null, 2) + '\n'),
    jsonMode,
    colour,
    warn: (text) =>
      io.stderr(
        jsonMode
          ? JSON.stringify({ warning: text }) + '\n'
          : `${paint('warning:', 'yellow', colourWanted(io))} ${text}\n`,
      ),
    table: (rows, columns, style) =>
      io.stdout(table(rows, columns, { width: outputWidth(io, wide), colour, ...(style ? { style } : {}) })),
  };
  const usage = (message: string) => reportError(io, jsonMode, '', new CliError(message, EXIT.usage));
  const [groupName, ...rest] = argv;
  if (!groupName || groupName === '--help' || groupName === '-h' || groupName === 'help') {
    io.stdout(rootHelp());
    return groupName ? EXIT.ok : EXIT.usage;
  }
  if (groupName === '--version' || groupName === '-v') {
    if (rest.includes('--json')) ctx.json({ version: VERSION });
    else io.stdout(`leash ${VERSION}\n`);
    return EXIT.ok;
  }
  const lazy = GROUPS.find((g) => g.name === groupName);
  if (!lazy) {
    const guess = closest(
      groupName,
      GROUPS.map((g) => g.name),
    );
    return usage(
      `unknown command '${groupName}'${guess ? `; did you mean \`leash ${guess}\`?` : '.'} Run 'leash --help' for the list.`,
    );
  }
  const group = await lazy.load();
  // A group with one unnamed command (e.g. `leash mcp`) takes its options directly.
  const single =
    group.commands.length === 1 && group.commands[0]?.name === '' ? group.commands[0] : undefined;
  const [cmdName, ...args] = single ? ['', ...rest] : rest;
  if (!single && (!cmdName || cmdName === '--help' || cmdName === '-h' || cmdName === '--json')) {
    if (cmdName === '--json') {
      ctx.json({
        group: group.name,
        commands: group.commands.map((c) => ({ name: c.name, summary: c.summary })),
      });
      return EXIT.ok;
    }
    io.stdout(groupHelp(group, lazy.summary));
    return cmdName ? EXIT.ok : EXIT.usage;
  }
  const cmd = single ?? group.commands.find((c) => c.name === cmdName);
  if (!cmd) {
    const guess = closest(
      cmdName ?? '',
      group.commands.map((c) => c.name),
    );
    return usage(
      `unknown command '${group.name} ${cmdName ?? ''}'${guess ? `; did you mean \`leash ${group.name} ${guess}\`?` : '.'} Run 'leash ${group.name} --help'.`,
    );
  }
  const where = `${group.name}${cmd.name ? ' ' + cmd.name : ''}`;
  try {
    const { values, positionals } = parseCommand(cmd, args);
    if (values.help) {
      io.stdout(helpText(cmd));
      return EXIT.ok;
    }
    wide = Boolean(values.wide);
    const code = await cmd.run(ctx, values, positionals);
    return code ?? EXIT.ok;
  } catch (error) {
    return reportError(io, jsonMode, where, error);
  }
}

/** One line on stderr (a JSON object under --json) and the exit code for it. */
function reportError(io: Io, jsonMode: boolean, where: string, error: unknown): number {
  const { code, message } = describeError(error);
  if (jsonMode) {
    io.stderr(
      JSON.stringify({ error: { code: EXIT_NAMES[code] ?? 'failed', exit_code: code, message } }) + '\n',
    );
  } else {
    io.stderr(`leash${where ? ' ' + where : ''}: ${message}\n`);
  }
  if (io.env.LEASH_LOG === 'debug' && error instanceof Error && error.stack && code === EXIT.failure)
    io.stderr(error.stack + '\n');
  return code;
}

function describeError(error: unknown): { code: number; message: string } {
  if (error instanceof CliError) return { code: error.exitCode, message: error.message };
  if (error instanceof ConfigError) return { code: EXIT.usage, message: error.message };
  const name = error instanceof Error ? error.name : 'Error';
  const message = error instanceof Error ? error.message : String(error);
  const code = connectionCode(error);
  if (code) {
    return {
      code: EXIT.unavailable,
      message: `cannot reach the database (${String(code)}); check DATABASE_URL or run 'leash db start'`,
    };
  }
  // Known failure classes carry readable, secret-free messages; anything else is summarised.
  const known = ['EmbeddedPostgresError', 'MigrationError', 'PolicyFileError', 'CredentialError', 'KeyError'];
  if (known.includes(name)) {
    const notFound = name === 'KeyError' && /^no (active )?(key|policy)/.test(message);
    return {
      code: name === 'EmbeddedPostgresError' ? EXIT.unavailable : notFound ? EXIT.notFound : EXIT.failure,
      message,
    };
  }
  return { code: EXIT.failure, message: `internal error (${name}); set LEASH_LOG=debug for details` };
}

const UNREACHABLE = [
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ECONNRESET',
  'ETIMEDOUT',
  '57P01',
  '57P03',
  '28P01',
];

/** The connection failure behind an error (pg's own, or one a migration or pool wrapped), if any. */
function connectionCode(error: unknown): string | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && UNREACHABLE.includes(code)) return code;
    const named = UNREACHABLE.find(
      (c) => c.startsWith('E') && e instanceof Error && e.message.includes(`connect ${c}`),
    );
    if (named) return named;
    if (e instanceof AggregateError) return connectionCode(e.errors[0]);
  }
  return undefined;
}
