// `leash audit query --operator-actions` and `leash audit tail --operator-actions`: who changed what (approve, deny,
// revoke, rotate, policy apply, credential and operator changes), from the operator_actions table.
import { ACTION_KINDS, actionVerb } from '../audit/action-words.js';
import {
  queryActions,
  type ActionFilter,
  type OperatorAction,
  watchActions,
} from '../audit/operator-actions.js';
import { displayText } from '../audit/display-text.js';
import { openDatabase } from '../db/database.js';
import { CliError, EXIT, type Context } from './command.js';
import { outputWidth, paint } from './output.js';

/** The flags `--operator-actions` reads; the call filters (agent, run, tool, …) do not apply to actions. */
export interface ActionFlags {
  operator?: string | undefined;
  action?: string | undefined;
  target?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
}

/** Help lines for `audit query`'s flags that go with --operator-actions (aligned by the help printer). */
export const ACTION_QUERY_HELP = [
  '--operator-actions  who changed what instead of calls: approve, deny, revoke, rotate, policy apply,',
  '                    vendor credential and operator changes (--since, --until, --limit, --format apply)',
  '--operator NAME     with --operator-actions: only what NAME did (admin: the admin token)',
  '--action A          with --operator-actions: only key.revoke, policy.apply, approval.approve, …',
  '--target T          with --operator-actions: only actions on T (key:<id>, policy:<name>, or an id)',
];

/** Help lines for `audit tail`'s. */
export const ACTION_TAIL_HELP = [
  '--operator-actions  who changed what instead of calls (approve, deny, revoke, rotate, policy apply,',
  '                    vendor credential and operator changes), one line each',
  '--operator NAME     with --operator-actions: only what NAME did',
];

/** The options behind those help lines. */
export const ACTION_QUERY_OPTIONS = {
  'operator-actions': { type: 'boolean' },
  operator: { type: 'string' },
  action: { type: 'string' },
  target: { type: 'string' },
} as const;
export const ACTION_TAIL_OPTIONS = {
  'operator-actions': { type: 'boolean' },
  operator: { type: 'string' },
} as const;

/** `audit query` with --operator-actions (or an action flag, which is refused without it). */
export async function actionsQuery(
  ctx: Context,
  v: {
    'operator-actions'?: boolean | undefined;
    operator?: string | undefined;
    action?: string | undefined;
    target?: string | undefined;
    agent?: string | undefined;
    run?: string | undefined;
    key?: string | undefined;
    tool?: string | undefined;
    decision?: string | undefined;
    outcome?: string | undefined;
    'min-usd'?: string | undefined;
  },
  times: { since?: Date | undefined; until?: Date | undefined },
  limit: number,
  format: 'table' | 'json' | 'csv',
): Promise<number> {
  if (!v['operator-actions']) refuseActionFlags(v);
  const { agent, run, key, tool, decision, outcome } = v;
  refuseCallFlags({ agent, run, key, tool, decision, outcome, 'min-usd': v['min-usd'] });
  return printActions(ctx, actionFilter({ ...v, ...times }, limit), format);
}

/** `audit tail` with --operator-actions (or --operator, refused without it). */
export async function actionsTail(
  ctx: Context,
  v: {
    'operator-actions'?: boolean | undefined;
    operator?: string | undefined;
    follow?: boolean | undefined;
    json?: boolean | undefined;
    agent?: string | undefined;
    run?: string | undefined;
    tool?: string | undefined;
    denied?: boolean | undefined;
    wide?: boolean | undefined;
  },
  backlog: number,
): Promise<number> {
  if (!v['operator-actions']) refuseActionFlags(v);
  refuseCallFlags({ agent: v.agent, run: v.run, tool: v.tool, denied: v.denied });
  const stop = v.follow ? signalStop() : undefined;
  try {
    return await tailActions(ctx, actionFilter(v, backlog || 1), {
      backlog,
      follow: Boolean(v.follow),
      json: Boolean(v.json) || ctx.jsonMode,
      width: outputWidth(ctx.io, Boolean(v.wide)),
      ...(stop ? { stop: stop.signal } : {}),
    });
  } finally {
    stop?.done();
  }
}

const MAX_FLAG = 300;

/** The action filter from flags; a bad value is a usage error naming the flag. */
export function actionFilter(f: ActionFlags, limit: number): ActionFilter {
  for (const [flag, value] of [
    ['--operator', f.operator],
    ['--target', f.target],
  ] as const)
    if (value !== undefined && (!value.trim() || value.length > MAX_FLAG))
      throw new CliError(`${flag}: expected 1-${MAX_FLAG} characters`, EXIT.usage);
  const action = f.action === undefined ? undefined : ACTION_KINDS.find((k) => k === f.action);
  if (f.action !== undefined && !action)
    throw new CliError(`--action must be one of ${ACTION_KINDS.join(', ')}, got '${f.action}'`, EXIT.usage);
  return { actor: f.operator, action, target: f.target, since: f.since, until: f.until, limit };
}

/** Refuses call filters given with --operator-actions, naming them. */
export function refuseCallFlags(given: Record<string, unknown>): void {
  const wrong = Object.entries(given)
    .filter(([, v]) => v !== undefined && v !== false)
    .map(([k]) => `--${k}`);
  if (wrong.length)
    throw new CliError(
      `${wrong.join(', ')} filter${wrong.length > 1 ? '' : 's'} calls, not operator actions; use --operator, --action, --target, --since or --until`,
      EXIT.usage,
    );
}

/** Refuses --operator, --action and --target without --operator-actions. */
export function refuseActionFlags(f: ActionFlags): void {
  const given = (['operator', 'action', 'target'] as const).filter((k) => f[k] !== undefined);
  if (given.length) throw new CliError(`--${given[0] ?? 'operator'} needs --operator-actions`, EXIT.usage);
}

/** The detail that matters, in a few words: keys revoked and why, the version applied, the note. */
export function actionDetail(a: OperatorAction): string {
  const d = a.detail;
  const parts: string[] = [];
  if (Array.isArray(d.key_ids) && !(d.key_ids.length === 1 && a.target === `key:${String(d.key_ids[0])}`))
    parts.push(`keys ${d.key_ids.map(String).join(',')}`);
  if (typeof d.version === 'number') parts.push(`version ${d.version}`);
  if (typeof d.source === 'string')
    parts.push(Array.isArray(d.env_vars) ? `from env ${d.env_vars.map(String).join(',')}` : d.source);
  if (typeof d.reason === 'string') parts.push(d.reason);
  if (typeof d.note === 'string') parts.push(d.note);
  return parts.join('; ');
}

/**
 * One action as a sentence-like line: `2026-… alice revoked key:abc (admin_api): incident 7`. Within `width` the
 * detail is cut (with …) and then the door left out; the time, the name and the target always stay whole.
 */
export function formatActionLine(a: OperatorAction, width = Infinity): string {
  const verb = actionVerb(a.action);
  // Only approvals are approved or denied: their id alone says which request.
  const target = a.action.startsWith('approval.') ? a.target.replace(/^approval:/, '') : a.target;
  // Names and reasons are operator-supplied: hidden characters print as ⟨U+…⟩ markers.
  const head = displayText(`${a.ts.toISOString()}  ${a.actor} ${verb} ${target}`);
  const via = ` (${a.via})`;
  const detail = displayText(actionDetail(a));
  if (head.length + via.length > width) return head;
  const line = head + via;
  if (!detail) return line;
  const room = width - line.length - 2;
  if (room >= detail.length) return `${line}: ${detail}`;
  return room >= 4 ? `${line}: ${detail.slice(0, room - 1)}…` : line;
}

const jsonAction = (a: OperatorAction) => ({ ...a, ts: a.ts.toISOString() });

/** `audit query --operator-actions`: newest first, as a table, JSON or CSV. */
export async function printActions(
  ctx: Context,
  filter: ActionFilter,
  format: 'table' | 'json' | 'csv',
): Promise<number> {
  const handle = await openDatabase(ctx.config(), { poolMax: 2 });
  const rows = await queryActions(handle.db, filter).finally(() => handle.close());
  if (format === 'json') ctx.json(rows.map(jsonAction));
  else if (format === 'csv') ctx.io.stdout(actionsCsv(rows));
  else if (!rows.length) ctx.print('no operator actions');
  else
    ctx.table(
      rows.map((a) => ({
        ts: a.ts,
        operator: displayText(a.actor),
        via: a.via,
        action: a.action,
        target: displayText(a.target),
        detail: displayText(actionDetail(a)),
      })),
      // Who, what and when always show, whole; the door goes first as the terminal narrows, the detail is cut.
      [
        { name: 'ts', priority: 0 },
        { name: 'operator', priority: 0 },
        { name: 'via', priority: 2 },
        { name: 'action', priority: 0 },
        { name: 'target', priority: 0 },
        { name: 'detail', priority: 1, cut: true },
      ],
    );
  return EXIT.ok;
}

const CSV_COLUMNS = ['id', 'ts', 'actor', 'via', 'action', 'target', 'detail'] as const;

function actionsCsv(rows: OperatorAction[]): string {
  const field = (v: OperatorAction[(typeof CSV_COLUMNS)[number]]) => {
    let s = v instanceof Date ? v.toISOString() : typeof v === 'string' ? v : JSON.stringify(v);
    if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`; // a spreadsheet would run it as a formula
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of rows) lines.push(CSV_COLUMNS.map((c) => field(r[c])).join(','));
  return lines.join('\r\n') + '\r\n';
}

/**
 * `audit tail --operator-actions`: the newest `backlog` actions oldest first, then (with `follow`) new ones as they
 * commit (watchActions), until `stop` aborts.
 */
export async function tailActions(
  ctx: Context,
  filter: ActionFilter,
  o: { backlog: number; follow: boolean; json: boolean; width: number; stop?: AbortSignal },
): Promise<number> {
  const print = (a: OperatorAction) =>
    ctx.io.stdout(
      o.json
        ? JSON.stringify(jsonAction(a)) + '\n'
        : paint(formatActionLine(a, o.width), a.action.endsWith('revoke') ? 'red' : 'yellow', ctx.colour) +
            '\n',
    );
  const handle = await openDatabase(ctx.config(), { poolMax: 2 });
  try {
    const first = o.backlog > 0 ? await queryActions(handle.db, { ...filter, limit: o.backlog }) : [];
    const shown = new Set(first.map((a) => a.id));
    first.reverse().forEach(print);
    if (!o.follow) return EXIT.ok;
    const watch = watchActions(handle.db, filter, (a) => {
      if (!shown.has(a.id)) print(a);
    });
    try {
      await watch.ready;
      await new Promise<void>((resolve) => {
        if (!o.stop || o.stop.aborted) return resolve();
        o.stop.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      await watch.stop();
    }
    return EXIT.ok;
  } finally {
    await handle.close();
  }
}

/** Builds the tail's stop signal from SIGINT/SIGTERM; returns it with the function that removes the handlers. */
export function signalStop(): { signal: AbortSignal; done: () => void } {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: stop.signal,
    done: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
