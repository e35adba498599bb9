import { startAlerts } from '../admin/alerts.js';
import { createLogger } from '../config/logger.js';
import { getKey, listKeys, mintKey, revokeKeys, rotateKey, type KeyRow } from '../keys/vault-keys.js';
import { withDb } from './with-db.js';
import { CliError, EXIT, command, type CommandGroup } from './command.js';
import type { Style } from './output.js';

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

const view = (k: KeyRow) => ({
  id: k.id,
  agent: k.agent,
  run_id: k.run_id,
  policy: k.policy_version ? `${k.policy}@${k.policy_version}` : k.policy,
  status: k.status,
  expires_at: k.expires_at,
  label: k.label,
});

const statusStyle = (column: string, text: string): Style | undefined =>
  column !== 'status' ? undefined : text === 'active' ? 'green' : 'red';

const create = command({
  name: 'create',
  summary: 'Mint a vault key for an agent (run); the key is printed once and stored only as a hash.',
  usage:
    'keys create --agent A --policy P [--run R] [--expires-in 30m] [--policy-version V] [--label L] [--meta k=v]… [--json]',
  help: [
    '--agent A           agent name (required)',
    '--policy P          policy name (required); the key follows its latest version',
    '--policy-version V  pin the key to one version of the policy',
    '--run R             run id this key is for',
    '--expires-in D      expire after a duration: 30m, 2h, 7d; "never" for a key that does not expire',
    '                    (without it the key never expires, and leash says so)',
    '--label L           free text shown in listings',
    '--meta k=v          metadata (repeatable)',
    '--json              print {id, key, agent, run_id, policy, expires_at}',
  ],
  options: {
    agent: { type: 'string' },
    policy: { type: 'string' },
    'policy-version': { type: 'string' },
    run: { type: 'string' },
    'expires-in': { type: 'string' },
    label: { type: 'string' },
    meta: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  },
  async run(ctx, v) {
    if (!v.agent || !v.policy) throw new CliError('--agent and --policy are required', EXIT.usage);
    const version = v['policy-version'] !== undefined ? Number(v['policy-version']) : undefined;
    if (version !== undefined && !Number.isInteger(version))
      throw new CliError('--policy-version must be a whole number', EXIT.usage);
    const never = v['expires-in'] === 'never';
    const expiresAt =
      v['expires-in'] && !never
        ? new Date(Date.now() + parseDuration(v['expires-in'], '--expires-in'))
        : undefined;
    const meta = parseMeta(v.meta);
    const k = await withDb(ctx, (db) =>
      mintKey(db, {
        agent: v.agent ?? '',
        policy: v.policy ?? '',
        runId: v.run,
        policyVersion: version,
        expiresAt,
        label: v.label,
        metadata: meta,
      }),
    );
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

const list = command({
  name: 'list',
  summary: 'List vault keys (never their secrets).',
  usage: 'keys list [--agent A] [--run R] [--active] [--json]',
  help: [
    '--agent A   only this agent',
    '--run R     only this run',
    '--active    only keys neither revoked nor expired',
    '--json      print JSON',
  ],
  options: {
    agent: { type: 'string' },
    run: { type: 'string' },
    active: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(ctx, v) {
    const rows = await withDb(ctx, (db) =>
      listKeys(db, {
        ...(v.agent ? { agent: v.agent } : {}),
        ...(v.run ? { runId: v.run } : {}),
        ...(v.active ? { active: true } : {}),
      }),
    );
    if (ctx.jsonMode) ctx.json(rows);
    else
      ctx.table(
        rows.map(view),
        ['id', 'agent', 'run_id', 'policy', 'status', 'expires_at', 'label'],
        statusStyle,
      );
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
  usage: 'keys revoke <id> | --agent A | --run R [--reason TEXT] [--json]',
  help: [
    '--agent A      revoke every key of this agent',
    '--run R        revoke every key of this run',
    '--reason TEXT  recorded on the key',
    '--json         print {revoked: [ids]}',
  ],
  options: {
    agent: { type: 'string' },
    run: { type: 'string' },
    reason: { type: 'string' },
    json: { type: 'boolean' },
  },
  positionals: { min: 0, max: 1 },
  async run(ctx, v, [id]) {
    const targets = [id, v.agent, v.run].filter(Boolean).length;
    if (targets !== 1) throw new CliError('give exactly one of <id>, --agent or --run', EXIT.usage);
    const target = id ? { id } : v.agent ? { agent: v.agent } : { runId: v.run ?? '' };
    const reason = v.reason ?? 'revoked by operator (cli)';
    const { revoked, matched } = await withDb(ctx, async (db) => {
      const revoked = await revokeKeys(db, target, reason);
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
    if (revoked.length && ctx.config().alertWebhookUrl) {
      // After the revoke has committed: the alert is news, never a precondition.
      const alerts = startAlerts({ config: ctx.config(), log: createLogger(ctx.config()) });
      alerts.notify({ type: 'key_revoked', key_ids: revoked, by: 'cli', reason });
      await alerts.drain(5_000);
      await alerts.close();
    }
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
  usage: 'keys rotate <id> [--json]',
  options: { json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [id]) {
    const key = await withDb(ctx, async (db) => {
      if (!(await getKey(db, id ?? ''))) throw new CliError(`no key '${id ?? ''}'`, EXIT.notFound);
      return rotateKey(db, id ?? '');
    });
    if (v.json) ctx.json({ id, key });
    else {
      ctx.print(key);
      ctx.io.stderr('This is the only time the new key is shown.\n');
    }
  },
});

export const keysCommands: CommandGroup = {
  name: 'keys',
  commands: [create, list, show, revoke, rotate],
};
