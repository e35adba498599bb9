// `leash policies promote` and `leash policies shadow report|drop`: a policy's shadow version (applied with
// `policies apply FILE --shadow`) is decided beside the enforced one on every live call; these read what it would have
// changed, make it the enforced version, or remove it.
import { sql } from 'kysely';
import { changeShadow, policyDocument } from '../policies/store.js';
import { formatUsd } from '../policy/money.js';
import { compareShadow, DISAGREEMENTS, shadowOf, type Disagreement } from '../policy/shadow.js';
import { announce, BY_HELP, BY_OPTION, cliActor } from './acting.js';
import { timeFlag } from './audit.js';
import { CliError, EXIT, command, intFlag, type Context } from './command.js';
import type { Column } from './output.js';
import { withDb } from './with-db.js';

const BATCH = 2_000;
/** Rows listed at most (the counts cover every row); --limit changes it. */
const DEFAULT_LIMIT = 50;

export interface ShadowChangeRow {
  id: string;
  ts: string;
  tool: string;
  agent: string | null;
  /** allowed, held, or the refusal code the enforced version gave */
  was: string;
  /** allowed, held, or the shadow's refusal code */
  now: string;
  disagreement: Disagreement;
  shadow_version: number;
  /** What the call was admitted at (allowed calls the shadow would deny), micro-USD. */
  usd_micros: number;
}

export interface ShadowReport {
  policy: string;
  since: string;
  until: string | null;
  /** Calls under the policy with a shadow decision in the range. */
  compared: number;
  agreed: number;
  /** The shadow could not decide (it needed a vendor lookup the enforced version skipped). */
  undecidable: number;
  disagreements: Record<Disagreement, number>;
  /** USD admitted by calls the shadow would refuse. */
  usd_refused_micros: number;
  changes: ShadowChangeRow[];
  /** Changes beyond --limit (counted above, not listed). */
  more: number;
}

/** The calls where a policy's shadow disagreed with the enforced version, read page by page (constant memory). */
export async function shadowReport(
  ctx: Context,
  o: { policy: string; since: Date; until?: Date | undefined; limit: number },
): Promise<ShadowReport> {
  const report: ShadowReport = {
    policy: o.policy,
    since: o.since.toISOString(),
    until: o.until?.toISOString() ?? null,
    compared: 0,
    agreed: 0,
    undecidable: 0,
    disagreements: { now_denied: 0, now_allowed: 0, now_held: 0, now_tripped: 0 },
    usd_refused_micros: 0,
    changes: [],
    more: 0,
  };
  await withDb(ctx, async (db) => {
    let after: string | undefined;
    for (;;) {
      let q = db
        .selectFrom('audit_log')
        .select(['id', 'ts', 'tool', 'agent', 'decision', 'reason', 'usd_micros', 'metadata'])
        .where('policy', '=', o.policy)
        .where('ts', '>=', o.since)
        .where(sql<boolean>`metadata ? 'shadow'`);
      if (o.until) q = q.where('ts', '<', o.until);
      if (after) q = q.where('id', '>', after);
      const rows = await q.orderBy('id').limit(BATCH).execute();
      for (const r of rows) {
        const shadow = shadowOf(r.metadata);
        if (!shadow) continue;
        report.compared++;
        const d = compareShadow(r.decision, r.reason, shadow);
        if (d === null) report.agreed++;
        else if (d === 'undecidable') report.undecidable++;
        else {
          report.disagreements[d]++;
          if ((d === 'now_denied' || d === 'now_tripped') && r.decision === 'allowed')
            report.usd_refused_micros += Number(r.usd_micros);
          if (report.changes.length >= o.limit) report.more++;
          else
            report.changes.push({
              id: r.id,
              ts: r.ts.toISOString(),
              tool: r.tool,
              agent: r.agent,
              was: r.decision === 'denied' ? (r.reason ?? 'denied') : r.decision,
              now:
                shadow.decision === 'denied'
                  ? `${shadow.code ?? 'denied'}${shadow.wire ? ` (${shadow.wire})` : ''}`
                  : shadow.decision,
              disagreement: d,
              shadow_version: shadow.version,
              usd_micros: Number(r.usd_micros),
            });
        }
      }
      if (rows.length < BATCH) break;
      after = rows.at(-1)?.id;
    }
  });
  return report;
}

const LABEL: Record<Disagreement, string> = {
  now_denied: 'now denied',
  now_tripped: 'now tripped',
  now_held: 'now held',
  now_allowed: 'now allowed',
};

// At 80 columns: the audit id and what it would now be stay whole; the tool, time and agent go first.
const CHANGE_COLUMNS: readonly Column[] = [
  { name: 'ts', priority: 3 },
  { name: 'id', priority: 0 },
  { name: 'tool', priority: 2 },
  { name: 'agent', priority: 4, cut: true },
  { name: 'was', priority: 1, cut: true },
  { name: 'now', priority: 0, cut: true, min: 17 },
  { name: 'usd', priority: 5 },
];

function printReport(ctx: Context, r: ShadowReport, shadowVersion: number | undefined) {
  ctx.print(`shadow of policy '${r.policy}'${shadowVersion ? ` (version ${shadowVersion})` : ''}`);
  ctx.print(
    `  since ${r.since}${r.until ? ` until ${r.until}` : ''}: ${r.compared} call${r.compared === 1 ? '' : 's'} compared`,
  );
  const total = DISAGREEMENTS.reduce((n, d) => n + r.disagreements[d], 0);
  ctx.print(`  agreed        ${r.agreed}`);
  for (const d of DISAGREEMENTS) {
    const n = r.disagreements[d];
    const usd =
      d === 'now_denied' && n && r.usd_refused_micros
        ? `  (${formatUsd(r.usd_refused_micros)} admitted that it would refuse)`
        : '';
    ctx.print(`  ${LABEL[d].padEnd(12)}  ${n}${usd}`);
  }
  if (r.undecidable)
    ctx.print(`  undecidable   ${r.undecidable}  (needed a vendor lookup the enforced policy skipped)`);
  if (!total) return;
  ctx.print(r.more ? `changes (the first ${r.changes.length}; ${r.more} more, see --limit):` : 'changes:');
  ctx.table(
    r.changes.map((c) => ({ ...c, usd: c.usd_micros ? formatUsd(c.usd_micros) : '-' })),
    CHANGE_COLUMNS,
  );
}

async function requireShadow(ctx: Context, policy: string): Promise<number | undefined> {
  return withDb(ctx, async (db) => {
    const row = await db
      .selectFrom('policies')
      .select('shadow_version')
      .where('name', '=', policy)
      .executeTakeFirst();
    if (!row) throw new CliError(`no policy '${policy}'`, EXIT.notFound);
    return row.shadow_version ?? undefined;
  });
}

export const shadowCommand = command({
  name: 'shadow',
  summary:
    "A policy's shadow version: `report` lists the live calls where it disagreed with the enforced one; `drop` removes it.",
  usage:
    'policies shadow report <name> [--since 24h] [--until T] [--limit N] [--json]\n       policies shadow drop <name> [--by NAME] [--json]',
  help: [
    'report  every call under the policy that the shadow decided (apply FILE --shadow): those it',
    '        would now deny, trip a wire on, hold for a person or allow, with the USD at stake',
    'drop    stop deciding calls by the shadow (its version stays in the history)',
    '--since T   from T (default 24h ago): 2026-11-20T14:30:00Z, 2026-11-20, or 30m, 2h, 7d',
    '--until T   before T (same forms)',
    `--limit N   list at most N changes (default ${DEFAULT_LIMIT}; all are counted)`,
    BY_HELP,
    '--json      print the report (money in micro-USD), or {name, from, to, shadow}',
    'Exit codes: report 0 no disagreement, 1 some; 3 no such policy (drop: or no shadow).',
  ],
  options: {
    since: { type: 'string', default: '24h' },
    until: { type: 'string' },
    limit: { type: 'string' },
    ...BY_OPTION,
  },
  positionals: { min: 2, max: 2 },
  async run(ctx, v, [verb = '', policy = '']) {
    if (verb === 'drop') {
      const by = cliActor(ctx, v.by);
      const r = await withDb(ctx, (db) => changeShadow(db, policy, 'drop', by));
      if (!r) throw new CliError(`policy '${policy}' has no shadow version`, EXIT.notFound);
      await announce(ctx, {
        type: 'operator_action',
        action: 'policy.unshadow',
        target: `policy:${policy}`,
        by: by.name,
        via: by.via,
      });
      if (ctx.jsonMode) return void ctx.json(r);
      ctx.print(`policy '${policy}': shadow version ${r.shadow} dropped; version ${r.to} stays enforced`);
      return EXIT.ok;
    }
    if (verb !== 'report') throw new CliError(`expected report or drop, got '${verb}'`, EXIT.usage);
    const since = timeFlag(v.since, '--since') ?? new Date(0);
    const until = timeFlag(v.until, '--until');
    const limit = intFlag(v.limit, '--limit') ?? DEFAULT_LIMIT;
    const shadowVersion = await requireShadow(ctx, policy);
    const r = await shadowReport(ctx, { policy, since, until, limit });
    if (ctx.jsonMode) ctx.json({ ...r, shadow_version: shadowVersion ?? null });
    else printReport(ctx, r, shadowVersion);
    return DISAGREEMENTS.some((d) => r.disagreements[d] > 0) ? EXIT.failure : EXIT.ok;
  },
});

export const promoteCommand = command({
  name: 'promote',
  summary:
    "Make a policy's shadow version the enforced one: keys that follow the latest version use it from their next call.",
  usage: 'policies promote <name> [--by NAME] [--json]',
  help: [
    BY_HELP,
    '--json       print {name, from, to, shadow}',
    'Exit codes: 0 promoted, 3 no such policy or no shadow.',
  ],
  options: { ...BY_OPTION },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [policy = '']) {
    const by = cliActor(ctx, v.by);
    const r = await withDb(ctx, (db) => changeShadow(db, policy, 'promote', by));
    if (!r) {
      const exists = await withDb(ctx, (db) => policyDocument(db, policy));
      throw new CliError(
        exists ? `policy '${policy}' has no shadow version to promote` : `no policy '${policy}'`,
        EXIT.notFound,
      );
    }
    await announce(ctx, {
      type: 'operator_action',
      action: 'policy.promote',
      target: `policy:${policy}`,
      by: by.name,
      via: by.via,
    });
    if (ctx.jsonMode) return void ctx.json(r);
    ctx.print(`policy '${policy}' is now version ${r.to} (was ${r.from}); it has no shadow`);
    return EXIT.ok;
  },
});
