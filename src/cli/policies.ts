import { applyPolicy, listPolicies, policyDocument, PolicyStateError } from '../policies/store.js';
import { stringify as toYaml } from 'yaml';
import { announce, BY_HELP, BY_OPTION, cliActor } from './acting.js';
import { withDb } from './with-db.js';
import { CliError, EXIT, command, intFlag, type CommandGroup, type Context } from './command.js';
import { replayCommand, testCommand } from './policy-check.js';
import { promoteCommand, shadowCommand } from './policy-shadow.js';
import { diffPolicies, formatChange } from './policy-diff.js';
import { loadPolicyFile, policyWarnings } from './policy-file.js';
import type { Column } from './output.js';

function warnAll(ctx: Context, warnings: string[]) {
  for (const w of warnings) ctx.warn(w);
}

const validate = command({
  name: 'validate',
  summary:
    'Check a policy file (YAML or JSON) without applying it; errors name the path and what was expected.',
  usage: 'policies validate <file> [--json]',
  help: ['--json  print {valid, name, tools, warnings}'],
  options: {},
  positionals: { min: 1, max: 1 },
  async run(ctx, _v, [file = '']) {
    const doc = await loadPolicyFile(file);
    const warnings = policyWarnings(doc);
    if (ctx.jsonMode)
      return void ctx.json({ valid: true, name: doc.name, tools: Object.keys(doc.tools), warnings });
    warnAll(ctx, warnings);
    ctx.print(`${file}: valid policy '${doc.name}' (${Object.keys(doc.tools).join(', ')})`);
  },
});

const apply = command({
  name: 'apply',
  summary:
    'Apply a policy file: a changed document becomes a new version; keys follow the latest unless pinned. With --shadow it is decided beside the enforced version on every call, deciding nothing, until promoted.',
  usage: 'policies apply <file> [--shadow] [--by NAME] [--json]',
  help: [
    "--shadow     install it as the policy's shadow: every live call is decided by it too and the audit",
    '             row says how; `policies shadow report` lists where it disagrees, `policies promote`',
    '             enforces it, `policies shadow drop` removes it',
    BY_HELP,
    '--json       print {name, version, created, digest, shadow, warnings}',
  ],
  options: { ...BY_OPTION, shadow: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [file = '']) {
    const by = cliActor(ctx, v.by);
    const doc = await loadPolicyFile(file);
    const warnings = policyWarnings(doc);
    const r = await withDb(ctx, (db) => applyPolicy(db, doc, by, { shadow: v.shadow === true })).catch(
      (e) => {
        throw e instanceof PolicyStateError
          ? new CliError(e.message, v.shadow ? EXIT.notFound : EXIT.failure)
          : e;
      },
    );
    if (r.created)
      await announce(ctx, {
        type: 'operator_action',
        action: r.shadow ? 'policy.shadow' : 'policy.apply',
        target: `policy:${r.name}`,
        by: by.name,
        via: by.via,
      });
    if (ctx.jsonMode) return void ctx.json({ ...r, warnings });
    warnAll(ctx, warnings);
    if (r.shadow)
      ctx.print(
        r.created
          ? `policy '${r.name}' version ${r.version} is now its shadow: decided beside the enforced version, deciding nothing`
          : `policy '${r.name}' shadow unchanged (version ${r.version})`,
      );
    else
      ctx.print(
        r.created
          ? `policy '${r.name}' is now version ${r.version}`
          : `policy '${r.name}' unchanged (version ${r.version})`,
      );
  },
});

// At 80 columns names and times are whole; the tool list (free text) is cut, applied_by hidden first.
const POLICY_COLUMNS: readonly Column[] = [
  { name: 'name', priority: 0 },
  { name: 'latest_version', priority: 1 },
  { name: 'shadow_version', priority: 6 },
  { name: 'tools', priority: 4, cut: true },
  { name: 'active_keys', priority: 2 },
  { name: 'updated_at', priority: 3 },
  { name: 'applied_by', priority: 5 },
];

const list = command({
  name: 'list',
  summary: 'List policies with their latest version, tools and active keys.',
  usage: 'policies list [--json]',
  options: {},
  async run(ctx) {
    const rows = await withDb(ctx, (db) => listPolicies(db));
    if (ctx.jsonMode) return void ctx.json(rows);
    ctx.table(
      rows.map((r) => ({ ...r, tools: r.tools.join(',') })),
      POLICY_COLUMNS,
    );
  },
});

const show = command({
  name: 'show',
  summary: 'Print a stored policy (latest version, or --version V) as YAML, or JSON with --json.',
  usage: 'policies show <name> [--version V] [--json]',
  help: ['--version V  this version instead of the latest'],
  options: { version: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [name = '']) {
    const version = intFlag(v.version, '--version');
    const doc = await withDb(ctx, (db) => policyDocument(db, name, version));
    if (!doc) throw new CliError(`no policy '${name}'${version ? ` version ${version}` : ''}`, EXIT.notFound);
    if (ctx.jsonMode) ctx.json(doc);
    else ctx.io.stdout(`# ${name} version ${doc.version}\n${toYaml(doc.document)}`);
  },
});

const diff = command({
  name: 'diff',
  summary:
    'What changed, path by path: the latest version against the previous one, another version, or a file. Exit 1 when they differ.',
  usage: 'policies diff <name> [--file F] [--from V] [--to V] [--json]',
  help: [
    '--file F   compare the latest (or --to) version with this file, as `apply` would change it',
    '--from V   the older side (default: the version before --to)',
    '--to V     the newer side (default: the latest version)',
    '--json     print {policy, from, to, changed, changes: [{path, op, …}]}',
    'Exit codes: 0 no changes, 1 changes (as git diff --exit-code), 3 no such policy or version.',
  ],
  options: { file: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [policy = '']) {
    const toV = intFlag(v.to, '--to');
    const fromV = intFlag(v.from, '--from');
    if (v.file && fromV !== undefined) throw new CliError('give --file or --from, not both', EXIT.usage);
    const fileDoc = v.file ? await loadPolicyFile(v.file) : undefined;
    const [before, after] = await withDb(ctx, async (db) => {
      const to = await policyDocument(db, policy, toV);
      if (!to) throw new CliError(`no policy '${policy}'${toV ? ` version ${toV}` : ''}`, EXIT.notFound);
      if (fileDoc) return [to, { version: 'file' as const, document: fileDoc }] as const;
      const fromVersion = fromV ?? to.version - 1;
      const from = fromVersion >= 1 ? await policyDocument(db, policy, fromVersion) : undefined;
      if (fromV !== undefined && !from)
        throw new CliError(`no policy '${policy}' version ${fromV}`, EXIT.notFound);
      return [from ?? { version: 0, document: {} }, to] as const;
    });
    const changes = diffPolicies(before.document, after.document);
    const label = (x: number | 'file') => (x === 'file' ? (v.file ?? 'file') : x ? `v${x}` : '(nothing)');
    if (ctx.jsonMode) {
      ctx.json({
        policy,
        from: before.version || null,
        to: after.version,
        changed: changes.length > 0,
        changes,
      });
    } else {
      ctx.print(`--- ${policy} ${label(before.version)}\n+++ ${policy} ${label(after.version)}`);
      ctx.print(changes.length ? changes.map(formatChange).join('\n') : '(no changes)');
    }
    return changes.length ? EXIT.failure : EXIT.ok;
  },
});

export const policiesCommands: CommandGroup = {
  name: 'policies',
  commands: [apply, list, show, validate, diff, testCommand, replayCommand, shadowCommand, promoteCommand],
};
