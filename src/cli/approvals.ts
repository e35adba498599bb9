import {
  cancelledText,
  decideApproval,
  getApproval,
  listApprovals,
  MAX_NOTE,
  type ApprovalRow,
  type Decision,
} from '../approvals/store.js';
import { displayText, displayValue } from '../audit/display-text.js';
import { formatUsd } from '../policy/money.js';
import { CliError, EXIT, command, intFlag, type CommandGroup, type Context } from './command.js';
import { cellText, type Column, type Style } from './output.js';
import { withDb } from './with-db.js';
import { announce, cliActor } from './acting.js';

// Agent- and approver-supplied text with hidden characters (a bidi override, an ESC) shown as ⟨U+…⟩ markers.
const row = (a: ApprovalRow) => ({
  id: a.id,
  status: a.status,
  agent: displayValue(a.agent),
  run_id: displayValue(a.run_id),
  tool: displayValue(a.tool),
  usd: formatUsd(a.usd_micros),
  created_at: a.created_at,
  expires_at: a.expires_at,
  decided_by: displayValue(a.decided_by),
  note: displayValue(a.note),
});

/** At 80 columns: the id (whole, to paste into `approvals approve`), status, amount and tool; more as it widens. */
const LIST_COLUMNS: readonly Column[] = [
  { name: 'id', priority: 0 },
  { name: 'status', priority: 0 },
  { name: 'agent', priority: 3 },
  { name: 'run_id', priority: 5 },
  { name: 'tool', priority: 2 },
  { name: 'usd', priority: 1 },
  { name: 'expires_at', priority: 4 },
  { name: 'decided_by', priority: 6 },
  { name: 'note', priority: 7, cut: true },
];

const statusStyle = (column: string, text: string): Style | undefined =>
  column !== 'status'
    ? undefined
    : text === 'pending'
      ? 'yellow'
      : text === 'approved' || text === 'used'
        ? 'green'
        : 'red';

const list = command({
  name: 'list',
  summary: 'List approval requests, newest first.',
  usage: 'approvals list [--pending] [--limit N] [--json] [--wide]',
  help: [
    '--pending   only requests still waiting for a person',
    '--limit N   at most N requests (default 100)',
    '--json      print JSON (money as usd_micros)',
  ],
  options: { pending: { type: 'boolean' }, limit: { type: 'string' }, json: { type: 'boolean' } },
  async run(ctx, v) {
    const limit = intFlag(v.limit, '--limit');
    const rows = await withDb(ctx, (db) =>
      listApprovals(db, { pending: Boolean(v.pending), ...(limit ? { limit } : {}) }),
    );
    if (ctx.jsonMode) return void ctx.json(rows);
    if (!rows.length)
      return void ctx.print(v.pending ? 'no pending approval requests' : 'no approval requests');
    ctx.table(rows.map(row), LIST_COLUMNS, statusStyle);
  },
});

function printOne(ctx: Context, a: ApprovalRow) {
  if (ctx.jsonMode) return void ctx.json(a);
  const fields: [string, unknown][] = [
    ['id', a.id],
    ['status', a.status],
    ['tool', a.operation ? `${a.tool} (${a.operation})` : a.tool],
    ['usd', formatUsd(a.usd_micros)],
    ['amount', a.amount === null ? null : `${a.amount} ${a.currency ?? ''}`.trim()],
    ['agent', a.agent],
    ['run_id', a.run_id],
    ['key_id', a.key_id],
    ['policy', a.policy],
    ['request', a.request],
    ['created_at', a.created_at],
    ['expires_at', a.expires_at],
    ['decided_by', a.decided_by],
    ['decided_at', a.decided_at],
    ['note', a.note],
    ['used_at', a.used_at],
    ['cancelled_at', a.cancelled_at],
    ['cancel_reason', a.cancel_reason],
    ['held_audit_id', a.held_audit_id],
    ['used_by_audit_id', a.used_by_audit_id],
  ];
  for (const [k, value] of fields) ctx.print(`${k.padEnd(17)} ${displayText(cellText(value))}`);
}

const show = command({
  name: 'show',
  summary: 'Show one approval request: the exact call, its amount, who decided and when.',
  usage: 'approvals show <id> [--json]',
  options: { json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, _v, [id]) {
    const a = await withDb(ctx, (db) => getApproval(db, id ?? ''));
    if (!a) throw new CliError(`no approval request '${id ?? ''}'`, EXIT.notFound);
    printOne(ctx, a);
  },
});

function decide(decision: Decision) {
  const verb = decision === 'approved' ? 'approve' : 'deny';
  return command({
    name: verb,
    summary:
      decision === 'approved'
        ? "Approve a pending request: the agent's next identical call is admitted once (caps still apply)."
        : 'Deny a pending request: the identical call is refused approval_denied until the request would expire.',
    usage: `approvals ${verb} <id> [--note TEXT] [--by NAME] [--json]`,
    help: [
      `--note TEXT  why (at most ${MAX_NOTE} characters; the agent sees it)`,
      '--by NAME    who decides (default $LEASH_OPERATOR, else cli:<your user name>)',
      '--json       print the request after the decision',
    ],
    options: { note: { type: 'string' }, by: { type: 'string' }, json: { type: 'boolean' } },
    positionals: { min: 1, max: 1 },
    async run(ctx, v, [id]) {
      if (v.note !== undefined && v.note.length > MAX_NOTE)
        throw new CliError(`--note is at most ${MAX_NOTE} characters`, EXIT.usage);
      const by = cliActor(ctx, v.by);
      const r = await withDb(ctx, (db) => decideApproval(db, id ?? '', decision, by, v.note));
      if (!r.ok) {
        if (r.reason === 'not_found') throw new CliError(`no approval request '${id ?? ''}'`, EXIT.notFound);
        const a = r.approval;
        throw new CliError(
          r.reason === 'expired'
            ? `approval request ${id ?? ''} expired at ${a?.expires_at.toISOString() ?? '?'}; it can no longer be decided`
            : r.reason === 'cancelled' && a
              ? `approval request ${id ?? ''} was ${cancelledText(a)}`
              : `approval request ${id ?? ''} is already ${a?.status ?? 'decided'}${a?.decided_by ? ` (by ${displayText(a.decided_by)})` : ''}`,
        );
      }
      await announce(ctx, {
        type: 'operator_action',
        action: decision === 'approved' ? 'approval.approve' : 'approval.deny',
        target: `approval:${r.approval.id}`,
        by: by.name,
        via: by.via,
      });
      if (ctx.jsonMode) return void ctx.json(r.approval);
      ctx.print(
        `${decision} ${r.approval.id}: ${displayText(r.approval.tool)} ${formatUsd(r.approval.usd_micros)} for agent ${displayValue(r.approval.agent, '?')}` +
          (decision === 'approved'
            ? `; the next identical call before ${r.approval.expires_at.toISOString()} is admitted once`
            : ''),
      );
    },
  });
}

export const approvalsCommands: CommandGroup = {
  name: 'approvals',
  commands: [list, show, decide('approved'), decide('denied')],
};
