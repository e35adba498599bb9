import {
  operatorPause,
  operatorPauses,
  operatorResume,
  pauseScope,
  withPauses,
  type KeyWithPause,
  type PauseView,
} from '../admin/key-ops.js';
import {
  getKey,
  KeyError,
  listKeys,
  mintBinding,
  mintKey,
  revokeKeys,
  rotateKey,
  type KeyRow,
} from '../keys/vault-keys.js';
import { announce, BY_HELP, BY_OPTION, cliActor } from './acting.js';
import { withDb } from './with-db.js';
import { CliError, EXIT, command, type CommandGroup } from './command.js';
import type { Column, Style } from './output.js';

/** "30m", "2h", "7d", "45s" → milliseconds. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(value.trim());
  if (!m) throw new CliError(`${flag} expects a duration like 30m, 2h or 7d, got '${value}'`, EXIT.usage);
  const n = Number(m[1]);
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
  return n * unit;
}

function parseMeta(values: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of values ?? []) {
    const i = kv.indexOf('=');
    if (i < 1) throw new CliError(`--meta expects key=value, got '${kv}'`, EXIT.usage);
    out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

const view = (k: KeyRow | KeyWithPause) => ({
  id: k.id,
  agent: k.agent,
  run_id: k.run_id,
  policy: k.policy_version ? `${k.policy}@${k.policy_version}` : k.policy,
  status: k.status,
  expires_at: k.expires_at,
  // A binding without a label says whose tokens it takes (the JSON has oauth_subject and oauth_client).
  label:
    k.label ??
    (k.oauth_subject ? `oauth ${k.oauth_subject}${k.oauth_client ? ` via ${k.oauth_client}` : ''}` : null),
});

/** Longest revoke reason kept (as the admin API and the console). */
const MAX_REASON = 500;

const statusStyle = (column: string, text: string): Style | undefined =>
  column !== 'status' ? undefined : text === 'active' ? 'green' : text === 'paused' ? 'yellow' : 'red';

const create = command({
  name: 'create',
  summary:
    'Mint a vault key for an agent (run), printed once and stored only as a hash; or, with --oauth-subject, bind an OAuth identity.',
  usage:
    'keys create --agent A --policy P [--oauth-subject SUB [--oauth-client C]] [--run R] [--expires-in 30m] [--policy-version V] [--label L] [--meta k=v]… [--json]',
  help: [
    '--agent A           agent name (required)',
    '--policy P          policy name (required); the key follows its latest version',
    '--policy-version V  pin the key to one version of the policy',
    '--run R             run id this key is for',
    '--expires-in D      expire after a duration: 30m, 2h, 7d; "never" for a key that does not expire',
    '                    (without it the key never expires, and leash says so)',
    '--label L           free text shown in listings',
    '--meta k=v          metadata (repeatable)',
    '--oauth-subject SUB a binding, not a key: access tokens from LEASH_OAUTH_ISSUER',
    '                    whose sub is SUB act as this agent (no key is printed)',
    '--oauth-client C    only tokens whose client_id is C (client-credentials agents)',
    '--oauth-issuer URL  the issuer the tokens come from (default LEASH_OAUTH_ISSUER)',
    '--json              print {id, key, agent, run_id, policy, expires_at}',
    '                    (a binding: {id, agent, …, oauth: {issuer, subject, client}})',
  ],
  options: {
    agent: { type: 'string' },
    policy: { type: 'string' },
    'policy-version': { type: 'string' },
    run: { type: 'string' },
    'expires-in': { type: 'string' },
    label: { type: 'string' },
    meta: { type: 'string', multiple: true },
    'oauth-subject': { type: 'string' },
    'oauth-client': { type: 'string' },
    'oauth-issuer': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(ctx, v) {
    if (!v.agent || !v.policy) throw new CliError('--agent and --policy are required', EXIT.usage);
    if (
      (v['oauth-client'] !== undefined || v['oauth-issuer'] !== undefined) &&
      v['oauth-subject'] === undefined
    )
      throw new CliError('--oauth-client and --oauth-issuer go with --oauth-subject', EXIT.usage);
    const version = v['policy-version'] !== undefined ? Number(v['policy-version']) : undefined;
    if (version !== undefined && !Number.isInteger(version))
      throw new CliError('--policy-version must be a whole number', EXIT.usage);
    const never = v['expires-in'] === 'never';
    const expiresAt =
      v['expires-in'] && !never
        ? new Date(Date.now() + parseDuration(v['expires-in'], '--expires-in'))
        : undefined;
    const meta = parseMeta(v.meta);
    // What a vault key and an OAuth binding are both minted with.
    const mint = {
      agent: v.agent ?? '',
      policy: v.policy ?? '',
      runId: v.run,
      policyVersion: version,
      expiresAt,
      label: v.label,
      metadata: meta,
    };
    if (v['oauth-subject'] !== undefined) {
      const issuer = v['oauth-issuer'] ?? ctx.config().oauth?.issuer;
      if (!issuer)
        throw new CliError(
          '--oauth-subject needs LEASH_OAUTH_ISSUER set (or --oauth-issuer URL)',
          EXIT.usage,
        );
      const b = await withDb(ctx, (db) =>
        mintBinding(db, {
          ...mint,
          issuer,
          subject: v['oauth-subject'] ?? '',
          client: v['oauth-client'] ?? null,
        }),
      );
      if (!v['expires-in'])
        ctx.warn(
          'this binding never expires; pass --expires-in 2h (or --expires-in never to say you mean it)',
        );
      if (v.json) {
        const { issuer: iss, subject, client, ...rest } = b;
        ctx.json({ ...rest, oauth: { issuer: iss, subject, client } });
        return;
      }
      ctx.print(b.id);
      ctx.io.stderr(
        `binding ${b.id}: tokens from ${b.issuer} with sub ${b.subject}${b.client ? ` and client_id ${b.client}` : ''} act as agent ${b.agent}${b.run_id ? ` run ${b.run_id}` : ''}, policy ${b.policy}, ${b.expires_at ? `expires ${b.expires_at.toISOString()}` : 'no expiry'}\n` +
          `Revoke it with: leash keys revoke ${b.id}\n`,
      );
      return;
    }
    const k = await withDb(ctx, (db) => mintKey(db, mint));
    if (!v['expires-in'])
      ctx.warn('this key never expires; pass --expires-in 2h (or --expires-in never to say you mean it)');
    if (v.json) {
      ctx.json({
        id: k.id,
        key: k.key,
        agent: k.agent,
        run_id: k.run_id,
        policy: k.policy,
        policy_version: k.policy_version,
        expires_at: k.expires_at,
      });
      return;
    }
    ctx.print(k.key);
    ctx.io.stderr(
      `key ${k.id} for agent ${k.agent}${k.run_id ? ` run ${k.run_id}` : ''}, policy ${k.policy}, ${k.expires_at ? `expires ${k.expires_at.toISOString()}` : 'no expiry'}\n` +
        'This is the only time the key is shown. Give it to the agent as LEASH_VAULT_KEY or Authorization: Bearer.\n',
    );
  },
});

// At 80 columns ids and status stay and times are whole; the label (free text) is cut, run_id and policy hidden first.
const KEY_COLUMNS: readonly Column[] = [
  { name: 'id', priority: 0 },
  { name: 'agent', priority: 1 },
  { name: 'run_id', priority: 4 },
  { name: 'policy', priority: 3 },
  { name: 'status', priority: 0 },
  { name: 'expires_at', priority: 2 },
  { name: 'label', priority: 5, cut: true },
];

const list = command({
  name: 'list',
  summary: 'List vault keys (never their secrets); a paused key shows status paused.',
  usage: 'keys list [--agent A] [--run R] [--active] [--json]',
  help: [
    '--agent A   only this agent',
    '--run R     only this run',
    '--active    only keys neither revoked nor expired (paused keys included)',
    '--json      print JSON (a paused key has pause: {scope_kind, scope, wire, paused_at})',
  ],
  options: {
    agent: { type: 'string' },
    run: { type: 'string' },
    active: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(ctx, v) {
    const rows = await withDb(ctx, async (db) =>
      withPauses(
        db,
        await listKeys(db, {
          ...(v.agent ? { agent: v.agent } : {}),
          ...(v.run ? { runId: v.run } : {}),
          ...(v.active ? { active: true } : {}),
        }),
      ),
    );
    if (ctx.jsonMode) ctx.json(rows);
    else ctx.table(rows.map(view), KEY_COLUMNS, statusStyle);
  },
});

const show = command({
  name: 'show',
  summary: 'Show one vault key (never its secret).',
  usage: 'keys show <id> [--json]',
  options: { json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [id]) {
    const k = await withDb(ctx, (db) => getKey(db, id ?? ''));
    if (!k) throw new CliError(`no key '${id ?? ''}'`, EXIT.notFound);
    if (v.json) ctx.json(k);
    else {
      for (const [field, value] of Object.entries(k)) {
        ctx.print(
          `${field.padEnd(15)} ${value instanceof Date ? value.toISOString() : value === null ? '-' : typeof value === 'object' ? JSON.stringify(value) : String(value)}`,
        );
      }
    }
  },
});

const revoke = command({
  name: 'revoke',
  summary: 'Revoke a key, every key of an agent, or every key of a run. The very next call fails.',
  usage: 'keys revoke <id> | --agent A | --run R [--reason TEXT] [--by NAME] [--json]',
  help: [
    '--agent A      revoke every key of this agent',
    '--run R        revoke every key of this run',
    `--reason TEXT  recorded on the key (at most ${MAX_REASON} characters)`,
    BY_HELP,
    '--json         print {revoked: [ids]}',
  ],
  options: {
    agent: { type: 'string' },
    run: { type: 'string' },
    reason: { type: 'string' },
    ...BY_OPTION,
    json: { type: 'boolean' },
  },
  positionals: { min: 0, max: 1 },
  async run(ctx, v, [id]) {
    const targets = [id, v.agent, v.run].filter(Boolean).length;
    if (targets !== 1) throw new CliError('give exactly one of <id>, --agent or --run', EXIT.usage);
    if (v.reason !== undefined && v.reason.length > MAX_REASON)
      throw new CliError(`--reason is at most ${MAX_REASON} characters`, EXIT.usage);
    const by = cliActor(ctx, v.by);
    const target = id ? { id } : v.agent ? { agent: v.agent } : { runId: v.run ?? '' };
    const reason = v.reason ?? 'revoked by operator (cli)';
    const { revoked, matched } = await withDb(ctx, async (db) => {
      const revoked = await revokeKeys(db, target, reason, by);
      if (revoked.length) return { revoked, matched: revoked.length };
      // Nothing active matched: an unknown key, agent or run is "not found"; one already revoked is done.
      const matched = id ? ((await getKey(db, id)) ? 1 : 0) : (await listKeys(db, target)).length;
      return { revoked, matched };
    });
    if (!matched) {
      const what = id
        ? `key '${id}'`
        : v.agent
          ? `key for agent '${v.agent}'`
          : `key for run '${v.run ?? ''}'`;
      throw new CliError(`no ${what}`, EXIT.notFound);
    }
    if (revoked.length)
      await announce(ctx, { type: 'key_revoked', key_ids: revoked, by: by.name, via: by.via, reason });
    if (v.json) ctx.json({ revoked });
    else
      ctx.print(
        revoked.length
          ? `revoked ${revoked.length} key${revoked.length > 1 ? 's' : ''}: ${revoked.join(', ')}`
          : `nothing to do: ${matched === 1 ? 'the key was' : `all ${matched} keys were`} already revoked or expired`,
      );
    return EXIT.ok;
  },
});

const rotate = command({
  name: 'rotate',
  summary: 'Give a key a new secret (same id, agent, run and history); the old secret stops working at once.',
  usage: 'keys rotate <id> [--by NAME] [--json]',
  help: [BY_HELP, '--json       print {id, key}'],
  options: { ...BY_OPTION, json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [id]) {
    const by = cliActor(ctx, v.by);
    const key = await withDb(ctx, async (db) => {
      if (!(await getKey(db, id ?? ''))) throw new CliError(`no key '${id ?? ''}'`, EXIT.notFound);
      return rotateKey(db, id ?? '', by);
    });
    await announce(ctx, {
      type: 'operator_action',
      action: 'key.rotate',
      target: `key:${id ?? ''}`,
      by: by.name,
      via: by.via,
    });
    if (v.json) ctx.json({ id, key });
    else {
      ctx.print(key);
      ctx.io.stderr('This is the only time the new key is shown.\n');
    }
  },
});

/** Exactly one of <id>, --run, --agent or --policy, as a pause scope; a usage error otherwise. */
function scopeOf(
  id: string | undefined,
  v: { run?: string | undefined; agent?: string | undefined; policy?: string | undefined },
) {
  if ([id, v.run, v.agent, v.policy].filter((x) => x !== undefined).length !== 1)
    throw new CliError('give exactly one of <id>, --run, --agent or --policy', EXIT.usage);
  return pauseScope({ key_id: id, run_id: v.run, agent: v.agent, policy: v.policy });
}

/** KeyError (a bad scope, an unknown key) as the CLI reports it: usage, or not found. */
function cliKeyError(error: unknown): never {
  if (error instanceof KeyError)
    throw new CliError(error.message, /^no key /.test(error.message) ? EXIT.notFound : EXIT.usage);
  throw error;
}

const SCOPE_OPTIONS = {
  run: { type: 'string' },
  agent: { type: 'string' },
  policy: { type: 'string' },
} as const;

/** "wire calls_per_minute: 11 calls_per_minute > 10 in 60s" or "by alice: incident 7". */
function pauseWhy(p: PauseView): string {
  if (p.wire)
    return `tripwire ${p.wire}: ${p.figure ?? '?'} ${p.metric ?? ''} > ${p.limit ?? '?'} in ${p.window_seconds ?? '?'}s`;
  return p.reason ? `operator: ${p.reason}` : 'operator';
}

const pauseCmd = command({
  name: 'pause',
  summary: 'Pause a key, a run, an agent or a policy: every call is refused key_paused until resumed.',
  usage: 'keys pause <id> | --run R | --agent A | --policy P [--reason TEXT] [--by NAME] [--json]',
  help: [
    '--run R        pause every key of this run',
    '--agent A      pause every key of this agent',
    '--policy P     pause every key of this policy',
    `--reason TEXT  recorded on the pause (at most ${MAX_REASON} characters)`,
    BY_HELP,
    '--json         print {paused, pause}',
    'Waits out calls in flight; pausing what is already paused changes nothing (exit 0).',
  ],
  options: { ...SCOPE_OPTIONS, reason: { type: 'string' }, ...BY_OPTION, json: { type: 'boolean' } },
  positionals: { min: 0, max: 1 },
  async run(ctx, v, [id]) {
    const scope = scopeOf(id, v);
    if (v.reason !== undefined && v.reason.length > MAX_REASON)
      throw new CliError(`--reason is at most ${MAX_REASON} characters`, EXIT.usage);
    const by = cliActor(ctx, v.by);
    const r = await withDb(ctx, (db) => operatorPause(db, scope, { by, reason: v.reason })).catch(
      cliKeyError,
    );
    if (r.paused)
      await announce(ctx, {
        type: 'operator_action',
        action: 'key.pause',
        target: `${scope.kind}:${scope.id}`,
        by: by.name,
        via: by.via,
      });
    if (v.json) ctx.json(r);
    else
      ctx.print(
        r.paused
          ? `paused ${scope.kind} ${scope.id}: its calls are refused key_paused until resumed`
          : `nothing to do: ${scope.kind} ${scope.id} was already paused (${r.pause.paused_at} by ${r.pause.paused_by})`,
      );
    return EXIT.ok;
  },
});

const resumeCmd = command({
  name: 'resume',
  summary:
    'Resume a paused key, run, agent or policy: its next call is admitted; its tripwires start afresh.',
  usage: 'keys resume <id> | --run R | --agent A | --policy P [--by NAME] [--json]',
  help: [
    '--run R     resume this run',
    '--agent A   resume this agent',
    '--policy P  resume this policy',
    BY_HELP,
    '--json      print {resumed, pause}',
    'Exit 3 when it was not paused.',
  ],
  options: { ...SCOPE_OPTIONS, ...BY_OPTION, json: { type: 'boolean' } },
  positionals: { min: 0, max: 1 },
  async run(ctx, v, [id]) {
    const scope = scopeOf(id, v);
    const by = cliActor(ctx, v.by);
    const ended = await withDb(ctx, (db) => operatorResume(db, scope, { by })).catch(cliKeyError);
    if (!ended) throw new CliError(`${scope.kind} ${scope.id} is not paused`, EXIT.notFound);
    await announce(ctx, {
      type: 'operator_action',
      action: 'key.resume',
      target: `${scope.kind}:${scope.id}`,
      by: by.name,
      via: by.via,
    });
    if (v.json) ctx.json({ resumed: true, pause: ended });
    else
      ctx.print(
        `resumed ${scope.kind} ${scope.id} (paused ${ended.paused_at} by ${ended.paused_by}: ${pauseWhy(ended)})`,
      );
    return EXIT.ok;
  },
});

// At 80 columns the scope and why stay; who and the policy go first.
const PAUSE_COLUMNS: readonly Column[] = [
  { name: 'scope_kind', priority: 0 },
  { name: 'scope', priority: 0 },
  { name: 'why', priority: 0, cut: true, min: 20 },
  { name: 'paused_at', priority: 1 },
  { name: 'paused_by', priority: 2 },
  { name: 'policy', priority: 3 },
];

const paused = command({
  name: 'paused',
  summary: 'List what is paused (keys, runs, agents, policies), the wire that tripped or who paused it.',
  usage: 'keys paused [--json]',
  help: ['--json  print one object per pause: {scope_kind, scope, wire, policy, figure, limit, …}'],
  options: { json: { type: 'boolean' } },
  async run(ctx, v) {
    const rows = await withDb(ctx, (db) => operatorPauses(db));
    if (v.json || ctx.jsonMode) ctx.json(rows);
    else
      ctx.table(
        rows.map((p) => ({
          scope_kind: p.scope_kind,
          scope: p.scope,
          why: pauseWhy(p),
          paused_at: p.paused_at,
          paused_by: p.paused_by,
          policy: p.policy,
        })),
        PAUSE_COLUMNS,
      );
  },
});

export const keysCommands: CommandGroup = {
  name: 'keys',
  commands: [create, list, show, revoke, rotate, pauseCmd, resumeCmd, paused],
};
