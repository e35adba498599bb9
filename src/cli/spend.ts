import { openDatabase } from '../db/database.js';
import { spendReport, type SpendGrouping, type SpendRow } from '../ledger/spend.js';
import { formatUsd } from '../policy/money.js';
import { timeFlag } from './audit.js';
import { CliError, EXIT, command, type CommandGroup } from './command.js';
import type { ColumnSpec } from './output.js';

const GROUPINGS: readonly SpendGrouping[] = ['agent', 'key', 'policy', 'day'];

const usd = (micros: number | null) => (micros === null ? '-' : formatUsd(micros));

/**
 * Money as settled (or estimated) cost and what pending calls have reserved against the caps, each under its JSON
 * name less `_micros`. The group always shows; at 80 columns a key's policy and the counts give way first.
 */
function tableRows(
  by: SpendGrouping,
  rows: SpendRow[],
): { rows: Record<string, unknown>[]; columns: ColumnSpec[] } {
  const withCaps = by === 'key' || by === 'policy';
  const columns: ColumnSpec[] = [
    { name: by, priority: 0 },
    ...(by === 'key'
      ? [
          { name: 'agent', priority: 1 },
          { name: 'policy', priority: 8 },
        ]
      : []),
    { name: 'cost', priority: 2 },
    { name: 'reserved', priority: 4 },
    { name: 'requests', priority: 6 },
    { name: 'denied', priority: 7 },
    ...(withCaps
      ? [
          { name: 'cap', priority: 5 },
          { name: 'remaining', priority: 3 },
        ]
      : []),
  ];
  return {
    rows: rows.map((r) => ({
      [by]: r.group,
      ...(by === 'key' ? { agent: r.agent, policy: r.policy } : {}),
      cost: usd(r.cost_micros),
      reserved: r.reserved_micros ? usd(r.reserved_micros) : '-',
      requests: r.requests,
      denied: r.denied,
      ...(withCaps ? { cap: usd(r.cap_micros), remaining: usd(r.remaining_micros) } : {}),
    })),
    columns,
  };
}

const spend = command({
  name: '',
  summary: 'Spend and calls per agent, key, policy or day, with today’s caps and what is left of them.',
  usage: 'spend [--by agent|key|policy|day] [--since T] [--until T] [--json] [--wide]',
  help: [
    '--by G       group by agent (default), key, policy or day (UTC)',
    '--since T    from T (default: start of today, UTC): 2026-11-20T14:30:00Z, 2026-11-20, or ago: 2h, 7d',
    '--until T    before T (same forms as --since)',
    '--json       print the report as JSON, money in micro-USD',
    'cost = what allowed calls cost (settled, or the estimate until the vendor prices them);',
    '  reserved = what calls still in flight (pending, unknown outcome) have reserved against the caps;',
    '  requests count every call, denied too; cap / remaining (by key or policy): the policy’s daily USD',
    '  cap and what is left of it today.',
    '  Money columns are dollars; --json gives the same names with _micros (cost_micros, reserved_micros,',
    '  cap_micros, …), and held_micros = cost + reserved.',
  ],
  options: {
    by: { type: 'string', default: 'agent' },
    since: { type: 'string' },
    until: { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(ctx, v) {
    const by = GROUPINGS.find((g) => g === v.by);
    if (!by) throw new CliError(`--by must be one of ${GROUPINGS.join(', ')}, got '${v.by}'`, EXIT.usage);
    const since = timeFlag(v.since, '--since');
    const until = timeFlag(v.until, '--until');
    const handle = await openDatabase(ctx.config(), { poolMax: 2 });
    const report = await spendReport(handle.db, { by, since, until }).finally(() => handle.close());
    if (ctx.jsonMode) {
      ctx.json(report);
      return EXIT.ok;
    }
    const t = tableRows(by, report.rows);
    ctx.print(
      `spend by ${by} since ${report.since.toISOString()}${report.until ? ` until ${report.until.toISOString()}` : ''}`,
    );
    ctx.table(t.rows, t.columns);
    return EXIT.ok;
  },
});

export const spendCommands: CommandGroup = {
  name: 'spend',
  commands: [spend],
};
