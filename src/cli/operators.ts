// `leash operators add|list|remove`: people's credentials for the admin API and the console.
import {
  addOperator,
  listOperators,
  OperatorError,
  operatorNameProblem,
  removeOperator,
} from '../keys/operators.js';
import { announce, BY_HELP, BY_OPTION, cliActor } from './acting.js';
import { CliError, EXIT, command, type CommandGroup } from './command.js';
import type { Style } from './output.js';
import { withDb } from './with-db.js';

function checkName(name: string): string {
  const problem = operatorNameProblem(name);
  if (problem) throw new CliError(`NAME: ${problem}; got '${name.slice(0, 80)}'`, EXIT.usage);
  return name;
}

const add = command({
  name: 'add',
  summary:
    'Add an operator: prints their token once (stored only as a hash) for the console and the admin API.',
  usage: 'operators add <name> [--by NAME] [--json]',
  help: [
    '<name>       1-64 characters of a-z, 0-9, ".", "_", "-" (recorded on everything they do)',
    BY_HELP,
    '--json       print {name, token, created_at}',
  ],
  options: { ...BY_OPTION, json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [raw = '']) {
    const name = checkName(raw);
    const by = cliActor(ctx, v.by);
    const op = await withDb(ctx, async (db) => {
      try {
        return await addOperator(db, name, by);
      } catch (error) {
        if (error instanceof OperatorError) throw new CliError(error.message, EXIT.failure);
        throw error;
      }
    });
    await announce(ctx, {
      type: 'operator_action',
      action: 'operator.add',
      target: `operator:${name}`,
      by: by.name,
      via: by.via,
    });
    if (ctx.jsonMode)
      return void ctx.json({ name: op.name, token: op.token, created_at: op.created_at.toISOString() });
    ctx.print(op.token);
    ctx.io.stderr(
      `operator ${op.name} added. This is the only time the token is shown: give it to ${op.name} to sign in\n` +
        'to the console (/console) or to send as Authorization: Bearer to /admin. Everything done with it is\n' +
        `recorded as ${op.name}; 'leash operators remove ${op.name}' ends it and its console sessions.\n`,
    );
  },
});

const statusStyle = (column: string, text: string): Style | undefined =>
  column !== 'status' ? undefined : text === 'active' ? 'green' : 'red';

const list = command({
  name: 'list',
  summary: 'List operators (never their tokens).',
  usage: 'operators list [--all] [--json]',
  help: ['--all   removed operators too', '--json  print JSON'],
  options: { all: { type: 'boolean' }, json: { type: 'boolean' } },
  async run(ctx, v) {
    const rows = await withDb(ctx, (db) => listOperators(db, { all: Boolean(v.all) }));
    if (ctx.jsonMode) return void ctx.json(rows);
    if (!rows.length) return void ctx.print("no operators; add one with 'leash operators add NAME'");
    ctx.table(
      rows.map((r) => ({ ...r })),
      [
        { name: 'name', priority: 0 },
        { name: 'status', priority: 1 },
        { name: 'created_at', priority: 2 },
        { name: 'created_by', priority: 3, cut: true },
        ...(v.all
          ? [
              { name: 'removed_at', priority: 4 },
              { name: 'removed_by', priority: 5, cut: true },
            ]
          : []),
      ],
      statusStyle,
    );
  },
});

const remove = command({
  name: 'remove',
  summary: 'Remove an operator: their token stops working and their console sessions end, on every replica.',
  usage: 'operators remove <name> [--by NAME] [--json]',
  help: [BY_HELP, '--json       print {name, removed: true}'],
  options: { ...BY_OPTION, json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [raw = '']) {
    const name = checkName(raw);
    const by = cliActor(ctx, v.by);
    const removed = await withDb(ctx, (db) => removeOperator(db, name, by));
    if (!removed) throw new CliError(`no operator '${name}'`, EXIT.notFound);
    await announce(ctx, {
      type: 'operator_action',
      action: 'operator.remove',
      target: `operator:${name}`,
      by: by.name,
      via: by.via,
    });
    if (ctx.jsonMode) ctx.json({ name, removed: true });
    else ctx.print(`operator ${name} removed: their token is refused and their console sessions end`);
  },
});

export const operatorsCommands: CommandGroup = {
  name: 'operators',
  commands: [add, list, remove],
};
