// `leash policies test` (one call, no vendor, nothing written) and `leash policies replay` (the audit log).
import { createReplay, undecidedRules, type ReplayReport, type ReplayRow } from '../audit/replay.js';
import { getKey } from '../keys/vault-keys.js';
import { compilePolicy } from '../policy/compile.js';
import { evaluate, type PolicyFacts } from '../policy/evaluate.js';
import { formatUsd } from '../policy/money.js';
import { pricingFrom, withoutNulls } from '../pipeline/tool.js';
import { timeFlag } from './audit.js';
import { CliError, EXIT, command, type Context } from './command.js';
import { loadPolicyFile } from './policy-file.js';
import { catalog } from './runtime.js';
import { withDb } from './with-db.js';

const RULES_ONLY =
  'policy rules only: caps, request limits and the loop guard are decided in SQL at admission and are not checked here';

interface CallSpec {
  tool: string;
  args: Record<string, unknown>;
  facts: Record<string, unknown>;
}

function parseCall(text: string): CallSpec {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CliError(`--call is not JSON: ${text.slice(0, 80)}`, EXIT.usage);
  }
  const obj = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!obj(raw)) throw new CliError('--call must be a JSON object {"tool": …, "args": {…}}', EXIT.usage);
  const r = raw as Record<string, unknown>;
  if (typeof r.tool !== 'string') throw new CliError('--call needs "tool": the tool name', EXIT.usage);
  if (r.args !== undefined && !obj(r.args)) throw new CliError('--call "args" must be an object', EXIT.usage);
  if (r.facts !== undefined && !obj(r.facts))
    throw new CliError('--call "facts" must be an object', EXIT.usage);
  const amount = (r.facts as Record<string, unknown> | undefined)?.amount as
    Record<string, unknown> | undefined;
  if (amount !== undefined && !(Number.isInteger(amount.minor) && typeof amount.currency === 'string'))
    throw new CliError('--call "facts.amount" must be {"minor": <integer>, "currency": "usd"}', EXIT.usage);
  return {
    tool: r.tool,
    args: (r.args ?? {}) as Record<string, unknown>,
    facts: (r.facts ?? {}) as Record<string, unknown>,
  };
}

type Verdict =
  | {
      decision: 'allow';
      amount_micros: number | null;
      estimated_cost_micros: number | null;
      /** Set when a person must approve the call first: it would be held, then admitted once approved. */
      approval_required: { expires_seconds: number } | null;
    }
  | { decision: 'deny'; code: string; message: string; details: Record<string, unknown> }
  | { decision: 'undecidable'; message: string; rules: string[] };

/** Decides one call against a policy the way the pipeline's validate → facts → evaluate stages do, without a vendor. */
export function decideCall(
  policy: ReturnType<typeof compilePolicy>,
  call: CallSpec,
  key: { revokedAt: Date | null; expiresAt: Date | null },
  ctx: Context,
): Verdict {
  const tool = catalog.tools.get(call.tool);
  const rule = policy.tools.get(call.tool);
  const deny = (code: string, message: string, details: Record<string, unknown> = {}): Verdict => ({
    decision: 'deny',
    code,
    message,
    details,
  });
  if (!tool) return deny('unknown_tool', `there is no tool named ${call.tool}`);
  if (!rule)
    return deny('tool_not_allowed', `policy '${policy.name}' does not allow ${call.tool}`, {
      allowed_tools: [...policy.tools.keys()],
    });
  const parsed = tool.input.safeParse(withoutNulls(call.args));
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({
      field: i.path.join('.') || '(input)',
      problem: i.message,
    }));
    return deny(
      'invalid_input',
      `invalid input for ${tool.name}: ${issues.map((i) => `${i.field}: ${i.problem}`).join('; ')}`,
      { issues },
    );
  }
  // A tool that looks facts up at the vendor gets them from "facts" (nothing is looked up); others derive them from the input.
  let facts: PolicyFacts = call.facts;
  let complete = Object.keys(call.facts).length > 0;
  if (!tool.lookup) {
    facts = { ...tool.facts(parsed.data, undefined), ...call.facts };
    complete = true;
  }
  const gaps = undecidedRules(rule, facts, complete);
  if (gaps.length)
    return {
      decision: 'undecidable',
      message: `${tool.name} looks facts up at the vendor; give them in --call as "facts" (e.g. {"amount": {"minor": 500, "currency": "usd"}, "customer": "cus_…"}) for rules: ${gaps.join(', ')}`,
      rules: gaps,
    };
  const d = evaluate({
    tool: tool.name,
    ownRules: tool.ownRules,
    policy,
    key,
    now: new Date(),
    facts,
    fxRates: ctx.config().fxRates,
  });
  if (!d.allow) return deny(d.code, d.message, d.details);
  let cost: number | null = null;
  try {
    cost = tool.estimateCostMicros(parsed.data, undefined, pricingFrom(ctx.config()), d.amountMicros);
  } catch {
    // The estimate may need looked-up data the test was not given; the decision stands without it.
  }
  return {
    decision: 'allow',
    amount_micros: d.amountMicros ?? null,
    estimated_cost_micros: cost,
    approval_required: d.approval ? { expires_seconds: d.approval.expiresSeconds } : null,
  };
}

export const testCommand = command({
  name: 'test',
  summary:
    'Decide one call against a policy file: the decision and the reason. No vendor call, nothing written. Exit 1 when denied.',
  usage: `policies test <file> --call '{"tool":"issue_refund","args":{…},"facts":{…}}' [--as-key ID] [--json]`,
  help: [
    '--call JSON   the call: {"tool": …, "args": {…}}; facts a tool looks up at the vendor (a payment\'s',
    '              customer and amount) go in "facts", e.g. {"customer":"cus_A","amount":{"minor":500,"currency":"usd"}}',
    '--as-key ID   decide as this vault key would be (revoked or expired keys are refused)',
    'Checks policy rules only; caps, request limits and the loop guard are decided at admission.',
    'Exit codes: 0 allowed, 1 denied, 2 the call lacks facts the rules need, 3 no such file or key.',
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
    const verdict = decideCall(policy, call, key, ctx);
    if (ctx.jsonMode) {
      ctx.json({
        tool: call.tool,
        policy: policy.name,
        ...(keyInfo ? { key: keyInfo } : {}),
        ...verdict,
        checked: RULES_ONLY,
      });
    } else if (verdict.decision === 'allow') {
      const money = [
        verdict.amount_micros !== null ? `amount ${formatUsd(verdict.amount_micros)}` : '',
        verdict.estimated_cost_micros !== null
          ? `estimated cost ${formatUsd(verdict.estimated_cost_micros)}`
          : '',
      ].filter(Boolean);
      ctx.print(
        `allow: ${call.tool} under policy '${policy.name}'${money.length ? ` (${money.join(', ')})` : ''}`,
      );
      if (verdict.approval_required)
        ctx.print(
          `held: a person must approve this exact call first (the approval is good for ${verdict.approval_required.expires_seconds}s)`,
        );
      ctx.print(`note: ${RULES_ONLY}`);
    } else if (verdict.decision === 'deny') {
      ctx.print(`deny ${verdict.code}: ${verdict.message}`);
    } else {
      ctx.print(`undecidable: ${verdict.message}`);
    }
    return verdict.decision === 'allow' ? EXIT.ok : verdict.decision === 'deny' ? EXIT.failure : EXIT.usage;
  },
});

const BATCH = 2_000;

export const replayCommand = command({
  name: 'replay',
  summary:
    'Run a candidate policy over past calls in the audit log: what it would now deny (by code, with the USD), allow, or cannot decide. Writes nothing.',
  usage: 'policies replay <file> [--since 7d] [--until T] [--agent A] [--policy NAME] [--json]',
  help: [
    '--since T      from T (default 7d ago): 2026-11-20T14:30:00Z, 2026-11-20, or ago: 30m, 2h, 7d',
    '--until T      before T (same forms)',
    '--agent A      only this agent',
    "--policy NAME  the calls made under this policy (default: the file's own name)",
    '--json         the report as JSON, money in micro-USD',
    'Replays policy rules only; caps, request limits and the loop guard are decided at admission.',
    "A row lacking a fact a rule needs (e.g. a refund's customer) is counted as undecidable, never guessed.",
    'Exit codes: 0 no decision would change, 1 some would, 3 no such file.',
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
    const replay = createReplay({ policy, tools: catalog.tools, fxRates: ctx.config().fxRates });
    await withDb(ctx, async (db) => {
      let after: string | undefined;
      for (;;) {
        let q = db
          .selectFrom('audit_log')
          .select(['id', 'ts', 'tool', 'decision', 'reason', 'request', 'amount', 'currency', 'metadata'])
          .select(['usd_micros', 'cost_micros', 'reserved_micros'])
          .where('policy', '=', name)
          .where('ts', '>=', since);
        if (until) q = q.where('ts', '<', until);
        if (v.agent) q = q.where('agent', '=', v.agent);
        if (after) q = q.where('id', '>', after);
        const rows: ReplayRow[] = await q.orderBy('id').limit(BATCH).execute();
        rows.forEach(replay.add);
        if (rows.length < BATCH) break;
        after = rows.at(-1)?.id;
      }
    });
    const report = replay.result();
    if (ctx.jsonMode)
      ctx.json({
        policy: name,
        file,
        since: since.toISOString(),
        until: until?.toISOString() ?? null,
        ...report,
      });
    else printReport(ctx, name, file, since, report);
    return report.now_denied || report.now_allowed ? EXIT.failure : EXIT.ok;
  },
});

const counts = (m: Record<string, number>) =>
  Object.entries(m)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');

function printReport(ctx: Context, name: string, file: string, since: Date, r: ReplayReport) {
  ctx.print(
    `replay of ${file} over ${r.rows} call${r.rows === 1 ? '' : 's'} under policy '${name}' since ${since.toISOString()}`,
  );
  const lines: [string, string][] = [
    [
      'now denied',
      `${r.now_denied}${r.now_denied ? `  (${formatUsd(r.usd_refused_micros)} would have been refused; ${counts(r.now_denied_by_code)})` : ''}`,
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
  for (const [label, text] of lines) ctx.print(`  ${label.padEnd(12)}  ${text}`);
  ctx.print(`note: ${r.note}`);
  if (r.changes.length) {
    ctx.print('changes:');
    ctx.table(
      r.changes.map((c) => ({ ...c, usd: c.usd_micros !== undefined ? formatUsd(c.usd_micros) : '-' })),
      ['ts', 'id', 'tool', 'was', 'now', 'usd'],
    );
  }
}
