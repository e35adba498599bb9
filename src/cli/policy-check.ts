// `leash policies test` (one call, no vendor, nothing written) and `leash policies replay` (the audit log). Both
// decide with the pipeline's own decideCall/decideFacts, so a dry run prices and holds a call as a live one would.
import { sql } from 'kysely';
import { createReplay, type ReplayReport, type ReplayRow } from '../audit/replay.js';
import { getKey } from '../keys/vault-keys.js';
import { compilePolicy } from '../policy/compile.js';
import { recipientsOf } from '../policy/tripwires.js';
import { createWireBacktest, type WireBacktest } from '../policy/wire-backtest.js';
import { decideCall, undecidedRules } from '../policy/decide-call.js';
import { formatUsd } from '../policy/money.js';
import { invalidInputMessage, parseInput, pricingFrom, withoutNulls } from '../pipeline/tool.js';
import { timeFlag } from './audit.js';
import { CliError, EXIT, command, type Context } from './command.js';
import { HELP_WIDTH, type Column } from './output.js';
import { loadPolicyFile } from './policy-file.js';
import { catalog } from './runtime.js';
import { withDb } from './with-db.js';

const RULES_ONLY =
  'policy rules only: caps, request limits and the loop guard are decided in SQL at admission and are not checked here';

/** Prints a line wrapped at spaces to 80 columns, later lines indented by `indent`; a long word stays whole. */
function say(ctx: Context, text: string, indent = '  '): void {
  let line = text;
  while (line.length > HELP_WIDTH) {
    const cut = line.lastIndexOf(' ', HELP_WIDTH);
    if (cut <= line.search(/\S/)) break;
    ctx.print(line.slice(0, cut).trimEnd());
    line = indent + line.slice(cut + 1).trimStart();
  }
  ctx.print(line);
}

/** The longest --call accepted: the HTTP front door's own body limit. */
const MAX_CALL_CHARS = 1_000_000;

interface CallSpec {
  tool: string;
  args: Record<string, unknown>;
  /** What the tool's vendor lookup would find (a payment's customer and amount); empty when not given. */
  facts: Record<string, unknown>;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function parseCall(text: string): CallSpec {
  if (text.length > MAX_CALL_CHARS)
    throw new CliError(`--call is longer than ${MAX_CALL_CHARS} characters`, EXIT.usage);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CliError(`--call is not JSON: ${text.slice(0, 80)}`, EXIT.usage);
  }
  if (!isObject(raw)) throw new CliError('--call must be a JSON object {"tool": …, "args": {…}}', EXIT.usage);
  const unknown = Object.keys(raw).filter((k) => k !== 'tool' && k !== 'args' && k !== 'facts');
  if (unknown.length)
    throw new CliError(
      `--call takes "tool", "args" and "facts", not ${unknown.map((k) => JSON.stringify(k.slice(0, 40))).join(', ')}`,
      EXIT.usage,
    );
  if (typeof raw.tool !== 'string') throw new CliError('--call needs "tool": the tool name', EXIT.usage);
  if (raw.args !== undefined && !isObject(raw.args))
    throw new CliError('--call "args" must be an object', EXIT.usage);
  if (raw.facts !== undefined && !isObject(raw.facts))
    throw new CliError('--call "facts" must be an object', EXIT.usage);
  return { tool: raw.tool, args: raw.args ?? {}, facts: raw.facts ?? {} };
}

type Money = { minor: number; currency: string } | null;

type Verdict =
  | {
      decision: 'allow';
      /** The money the call moves, in the vendor's minor units, as the pipeline would record it. */
      amount: Money;
      amount_micros: number | null;
      estimated_cost_micros: number;
      /** Set when a person must approve the call first: it would be held, then admitted once approved. */
      approval_required: { expires_seconds: number } | null;
    }
  | { decision: 'deny'; code: string; message: string; details: Record<string, unknown>; amount: Money }
  | { decision: 'undecidable'; message: string; rules: string[]; facts_needed: string[] };

const FACTS_EXAMPLE = '{"customer": "cus_…", "amount": {"minor": 15000, "currency": "usd"}}';

/** The facts a generic rule reads, to name what a dry run must be told. */
const RULE_FACT: Readonly<Record<string, string>> = {
  max_amount_usd: 'amount',
  customers: 'customer',
  approval: 'amount',
};

/**
 * Decides one call against a policy as the pipeline's validate → facts → evaluate stages do, with no vendor: the
 * facts a tool looks up come from what `call.facts` says the vendor would answer (a payment's customer and amount;
 * the refund's own amount still comes from its arguments), and the decision and price from decideCall.
 */
export function dryRun(
  policy: ReturnType<typeof compilePolicy>,
  call: CallSpec,
  key: { revokedAt: Date | null; expiresAt: Date | null },
  ctx: Context,
): Verdict {
  const deny = (
    code: string,
    message: string,
    details: Record<string, unknown> = {},
    amount: Money = null,
  ): Verdict => ({ decision: 'deny', code, message, details, amount });
  const now = new Date();
  // The key first, as the pipeline authenticates before it looks at the call.
  if (key.revokedAt)
    return deny('key_revoked', 'this vault key has been revoked', { revoked_at: key.revokedAt });
  if (key.expiresAt && key.expiresAt.getTime() <= now.getTime())
    return deny('key_expired', 'this vault key has expired', { expired_at: key.expiresAt });
  const tool = catalog.tools.get(call.tool);
  if (!tool) return deny('unknown_tool', `there is no tool named ${call.tool.slice(0, 80)}`);
  const rule = policy.tools.get(tool.name);
  if (!rule)
    return deny('tool_not_allowed', `policy '${policy.name}' does not allow ${tool.name}`, {
      allowed_tools: [...policy.tools.keys()],
    });
  const parsed = parseInput(tool, withoutNulls(call.args));
  if (!parsed.ok)
    return deny('invalid_input', invalidInputMessage(tool.name, parsed.issues), { issues: parsed.issues });

  let looked: unknown;
  if (!tool.lookup) {
    if (Object.keys(call.facts).length)
      throw new CliError(
        `--call "facts": ${tool.name} looks nothing up at the vendor; its facts come from "args" alone`,
        EXIT.usage,
      );
  } else {
    const given = call.facts;
    const assumed = tool.assumeLookup?.(given, parsed.input);
    if (assumed && 'issues' in assumed)
      throw new CliError(
        `--call ${assumed.issues.map((i) => `${i.field}: ${i.problem}`).join('; ')}`,
        EXIT.usage,
      );
    // A rule that reads a fact the operator did not give is undecided, never taken as "none".
    const gaps = undecidedRules(rule, given, assumed !== undefined);
    const missing = assumed && 'missing' in assumed ? assumed.missing : [];
    if (!assumed || gaps.length || missing.length) {
      const needed = [...new Set([...missing, ...gaps.flatMap((g) => RULE_FACT[g] ?? [])])];
      const what = assumed
        ? `give what the vendor would answer in --call "facts" (e.g. ${FACTS_EXAMPLE})`
        : 'a dry run cannot be told what it finds';
      const parts = [
        needed.length ? `missing: ${needed.join(', ')}` : '',
        gaps.length ? `for rules: ${gaps.join(', ')}` : '',
      ].filter(Boolean);
      return {
        decision: 'undecidable',
        message: `${tool.name} looks facts up at the vendor; ${what}${parts.length ? `; ${parts.join('; ')}` : ''}`,
        rules: gaps,
        facts_needed: needed,
      };
    }
    if ('looked' in assumed) looked = assumed.looked;
  }

  const { facts, decision, costMicros } = decideCall({
    tool,
    input: parsed.input,
    looked,
    policy,
    key,
    now,
    pricing: pricingFrom(ctx.config()),
  });
  const amount = facts.amount ? { minor: facts.amount.minor, currency: facts.amount.currency } : null;
  if (!decision.allow) return deny(decision.code, decision.message, decision.details, amount);
  return {
    decision: 'allow',
    amount,
    amount_micros: decision.amountMicros ?? null,
    estimated_cost_micros: costMicros,
    approval_required: decision.approval ? { expires_seconds: decision.approval.expiresSeconds } : null,
  };
}

export const testCommand = command({
  name: 'test',
  summary:
    'Decide one call against a policy file as the pipeline would: allowed (and its amount), held for a person, or denied and why. No vendor call, nothing written. Exit 1 when denied.',
  usage: `policies test <file> --call '{"tool":"issue_refund","args":{…},"facts":{…}}' [--as-key ID] [--json]`,
  help: [
    '--call JSON   the call: {"tool": …, "args": {…}, "facts": {…}}. "facts" is what the tool would look up',
    '              at the vendor, e.g. the payment a refund is of: {"customer":"cus_A","amount":{"minor":15000,',
    '              "currency":"usd"},"amount_refunded":0}; the refund\'s amount is args.amount, or all that is',
    '              still refundable',
    '--as-key ID   decide as this vault key would be (revoked or expired keys are refused)',
    'Checks policy rules only; caps, request limits and the loop guard are decided at admission.',
    'Exit codes: 0 allowed (or held for a person), 1 denied, 2 a bad --call, or it lacks facts the rules need,',
    '  3 no such file or key.',
  ],
  options: { call: { type: 'string' }, 'as-key': { type: 'string' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [file = '']) {
    if (!v.call) throw new CliError('--call is required', EXIT.usage);
    const call = parseCall(v.call);
    const doc = await loadPolicyFile(file);
    const policy = compilePolicy(doc, 0);
    let key: { revokedAt: Date | null; expiresAt: Date | null } = { revokedAt: null, expiresAt: null };
    let keyInfo: Record<string, unknown> | undefined;
    const asKey = v['as-key'];
    if (asKey) {
      const k = await withDb(ctx, (db) => getKey(db, asKey));
      if (!k) throw new CliError(`no key '${asKey}'`, EXIT.notFound);
      key = { revokedAt: k.revoked_at, expiresAt: k.expires_at };
      keyInfo = { id: k.id, agent: k.agent, run_id: k.run_id, policy: k.policy, status: k.status };
      if (k.policy !== policy.name)
        ctx.warn(`key ${k.id} uses policy '${k.policy}', not '${policy.name}'; deciding with ${file} anyway`);
    }
    const verdict = dryRun(policy, call, key, ctx);
    if (ctx.jsonMode) {
      ctx.json({
        tool: call.tool,
        policy: policy.name,
        ...(keyInfo ? { key: keyInfo } : {}),
        ...verdict,
        checked: RULES_ONLY,
      });
    } else if (verdict.decision === 'allow') {
      const cost = verdict.estimated_cost_micros;
      const money = [
        verdict.amount_micros !== null ? `amount ${formatUsd(verdict.amount_micros)}` : '',
        // A refund costs its amount: said once.
        cost && cost !== verdict.amount_micros ? `estimated cost ${formatUsd(cost)}` : '',
      ].filter(Boolean);
      const held = verdict.approval_required;
      say(
        ctx,
        `${held ? 'held' : 'allow'}: ${call.tool} under policy '${policy.name}'${money.length ? ` (${money.join(', ')})` : ''}`,
      );
      if (held)
        say(
          ctx,
          `  a person must approve this exact call first; the approval is good for ${held.expires_seconds}s`,
        );
      say(ctx, `note: ${RULES_ONLY}`);
    } else if (verdict.decision === 'deny') {
      say(ctx, `deny ${verdict.code}: ${verdict.message}`);
    } else {
      say(ctx, `undecidable: ${verdict.message}`);
    }
    return verdict.decision === 'allow' ? EXIT.ok : verdict.decision === 'deny' ? EXIT.failure : EXIT.usage;
  },
});

const BATCH = 2_000;

export const replayCommand = command({
  name: 'replay',
  summary:
    'Run a candidate policy over past calls in the audit log, held ones too: what it would now deny (by code, with the USD), hold for a person, allow, or cannot decide. Writes nothing.',
  usage: 'policies replay <file> [--since 7d] [--until T] [--agent A] [--policy NAME] [--json]',
  help: [
    '--since T      from T (default 7d ago): 2026-11-20T14:30:00Z, 2026-11-20, or ago: 30m, 2h, 7d',
    '--until T      before T (same forms)',
    '--agent A      only this agent',
    "--policy NAME  the calls made under this policy (default: the file's own name)",
    '--json         the report as JSON, money in micro-USD',
    'Replays policy rules, and backtests its tripwires: when each would have tripped, for which',
    'key, run or agent, and what it would have stopped. Caps, request limits and the loop guard',
    'are decided at admission and are not replayed.',
    "A row lacking a fact a rule needs (e.g. a refund's customer) is counted as undecidable, never guessed.",
    'A call a person approved counts as held: a candidate without the approval rule now allows it.',
    'Exit codes: 0 no decision would change and no enforced wire would trip, 1 otherwise,',
    '3 no such file.',
  ],
  options: {
    since: { type: 'string', default: '7d' },
    until: { type: 'string' },
    agent: { type: 'string' },
    policy: { type: 'string' },
  },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [file = '']) {
    const since = timeFlag(v.since, '--since') ?? new Date(0);
    const until = timeFlag(v.until, '--until');
    const doc = await loadPolicyFile(file);
    const policy = compilePolicy(doc, 0);
    const name = v.policy ?? doc.name;
    // The vendors' REST endpoints are named in policies and the audit log like tools.
    const tools = new Map([...catalog.tools, ...(catalog.endpoints ?? [])]);
    const replay = createReplay({ policy, tools, fxRates: ctx.config().fxRates });
    const wires = createWireBacktest({ name, tripwires: policy.tripwires });
    await withDb(ctx, async (db) => {
      // In time order (ts, then id), as the wires measure calls: keyset pages, constant memory.
      let after: { ts: Date; id: string } | undefined;
      for (;;) {
        let q = db
          .selectFrom('audit_log')
          .select(['id', 'ts', 'tool', 'decision', 'reason', 'request', 'amount', 'currency', 'metadata'])
          .select(['usd_micros', 'cost_micros', 'reserved_micros', 'key_id', 'agent', 'run_id'])
          .where('policy', '=', name)
          .where('ts', '>=', since);
        if (until) q = q.where('ts', '<', until);
        if (v.agent) q = q.where('agent', '=', v.agent);
        if (after) q = q.where(sql<boolean>`(ts, id) > (${after.ts}, ${after.id}::uuid)`);
        const rows: ReplayRow[] = await q.orderBy('ts').orderBy('id').limit(BATCH).execute();
        for (const row of rows) {
          const side = replay.add(row);
          // The wires measure calls of a key; rows of no valid key are not any scope's.
          if (row.key_id && row.agent)
            wires.add({
              id: row.id,
              ts: row.ts,
              key: { id: row.key_id, agent: row.agent, run_id: row.run_id ?? null },
              side,
              usd_micros: side === 'allowed' ? Number(row.usd_micros) : 0,
              recipients: recipientsOf(factsOf(row.metadata)),
            });
        }
        const last = rows.at(-1);
        if (rows.length < BATCH || !last) break;
        after = { ts: last.ts, id: last.id };
      }
    });
    const report = replay.result();
    const tripwires = wires.result();
    if (ctx.jsonMode)
      ctx.json({
        policy: name,
        file,
        since: since.toISOString(),
        until: until?.toISOString() ?? null,
        ...report,
        tripwires,
      });
    else {
      printReport(ctx, name, file, since, report);
      printWires(ctx, tripwires);
    }
    const tripped = tripwires.trips.some((t) => t.mode === 'enforce' && t.then !== 'alert');
    return report.now_denied || report.now_allowed || report.now_held || tripped ? EXIT.failure : EXIT.ok;
  },
});

const counts = (m: Record<string, number>) =>
  Object.entries(m)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');

// Narrow terminals hide usd, then tool, then ts; what the call was is cut before what it is now (a denial code,
// never cut below 17 characters); the audit id is always whole.
const CHANGE_COLUMNS: readonly Column[] = [
  { name: 'ts', priority: 2 },
  { name: 'id', priority: 0 },
  { name: 'tool', priority: 3 },
  { name: 'was', priority: 1, cut: true },
  { name: 'now', priority: 0, cut: true, min: 17 },
  { name: 'usd', priority: 4 },
];

function printReport(ctx: Context, name: string, file: string, since: Date, r: ReplayReport) {
  say(
    ctx,
    `replay of ${file} over ${r.rows} call${r.rows === 1 ? '' : 's'} under policy '${name}' since ${since.toISOString()}`,
  );
  const lines: [string, string][] = [
    [
      'now denied',
      `${r.now_denied}${r.now_denied ? `  (${formatUsd(r.usd_refused_micros)} would have been refused; ${counts(r.now_denied_by_code)})` : ''}`,
    ],
    [
      'now held',
      `${r.now_held}${r.now_held ? `  (were ${counts(r.now_held_by_code)}; a person must approve)` : ''}`,
    ],
    [
      'now allowed',
      `${r.now_allowed}${r.now_allowed ? `  (were ${counts(r.now_allowed_by_code)}; caps still apply)` : ''}`,
    ],
    ['unchanged', String(r.unchanged)],
    [
      'undecidable',
      `${r.undecidable}${r.undecidable ? `  (the audit row lacks the facts for: ${counts(r.undecidable_by_rule)})` : ''}`,
    ],
    [
      'not replayed',
      `${r.not_replayed}${r.not_replayed ? '  (refused before policy: key, input or vendor lookup)' : ''}`,
    ],
  ];
  for (const [label, text] of lines) say(ctx, `  ${label.padEnd(12)}  ${text}`, ' '.repeat(18));
  const d = r.decisions;
  if (r.replayed)
    say(
      ctx,
      `in all, the candidate allows ${d.allowed}, holds ${d.held} and denies ${d.denied}${d.denied ? ` (${counts(d.denied_by_code)})` : ''}`,
    );
  say(ctx, `note: ${r.note}`);
  if (r.changes.length) {
    ctx.print('changes:');
    ctx.table(
      r.changes.map((c) => ({ ...c, usd: c.usd_micros !== undefined ? formatUsd(c.usd_micros) : '-' })),
      CHANGE_COLUMNS,
    );
  }
}

/** The facts a row's call was decided on (`metadata.facts`), for the recipients a wire counts. */
function factsOf(metadata: unknown): Record<string, unknown> | undefined {
  const f = (metadata as { facts?: unknown } | null)?.facts;
  return typeof f === 'object' && f !== null ? (f as Record<string, unknown>) : undefined;
}

// Each time a wire went over its line: the wire and the scope stay whole; when and what it stopped go first.
const TRIP_COLUMNS: readonly Column[] = [
  { name: 'at', priority: 3 },
  { name: 'wire', priority: 0, cut: true, min: 12 },
  { name: 'scope', priority: 0, cut: true, min: 16 },
  { name: 'figure', priority: 1 },
  { name: 'then', priority: 1 },
  { name: 'stopped', priority: 2 },
];

function printWires(ctx: Context, w: WireBacktest) {
  if (!w.wires.length) return;
  say(ctx, 'tripwires:');
  for (const wire of w.wires)
    say(
      ctx,
      `  ${wire.wire} (${wire.then}${wire.mode === 'enforce' ? '' : `, ${wire.mode}`}, per ${wire.per}): ` +
        (wire.over ? `over its line ${wire.over} time${wire.over === 1 ? '' : 's'}` : 'never over its line'),
      '    ',
    );
  if (w.stopped_calls)
    say(
      ctx,
      `  would have stopped ${w.stopped_calls} call${w.stopped_calls === 1 ? '' : 's'}` +
        `${w.stopped_usd_micros ? ` (${formatUsd(w.stopped_usd_micros)} admitted)` : ''}`,
      '    ',
    );
  if (w.trips.length)
    ctx.table(
      w.trips.map((t) => ({
        at: t.at,
        wire: t.wire,
        scope: `${t.scope_kind} ${t.scope}`,
        figure: `${t.metric === 'spend_usd_per_10m' ? formatUsd(t.figure) : t.figure}/${t.metric === 'spend_usd_per_10m' ? formatUsd(t.limit) : t.limit}`,
        then: t.mode === 'enforce' ? t.then : `${t.then} (${t.mode})`,
        stopped: t.stopped_calls
          ? `${t.stopped_calls}${t.stopped_usd_micros ? ` ${formatUsd(t.stopped_usd_micros)}` : ''}`
          : '-',
      })),
      TRIP_COLUMNS,
    );
  say(ctx, `note: ${w.note}`);
}
