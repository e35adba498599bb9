import { canonicalJson, PolicyFileError, validatePolicy } from '../policy/compile.js';
import { readPolicyFile } from '../policy/file.js';
import { applyPolicy, listPolicies, policyDocument } from '../policy/store.js';
import { ruleSpecs } from '../pipeline/tool.js';
import { stringify as toYaml } from 'yaml';
import { withDb } from './with-db.js';
import { CliError, EXIT, command, table, type CommandGroup } from './command.js';
import { catalog } from './runtime.js';

async function load(path: string) {
  try {
    return validatePolicy(await readPolicyFile(path), ruleSpecs(catalog));
  } catch (error) {
    if (error instanceof PolicyFileError)
      throw new CliError(`${path} is not a valid policy:\n${error.message}`, EXIT.failure);
    throw error;
  }
}

const validate = command({
  name: 'validate',
  summary:
    'Check a policy file (YAML or JSON) without applying it; errors name the path and what was expected.',
  usage: 'policies validate <file> [--json]',
  options: { json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [file]) {
    const doc = await load(file ?? '');
    if (v.json) ctx.json({ valid: true, name: doc.name, tools: Object.keys(doc.tools) });
    else ctx.print(`${file ?? ''}: valid policy '${doc.name}' (${Object.keys(doc.tools).join(', ')})`);
  },
});

const apply = command({
  name: 'apply',
  summary:
    'Apply a policy file: a changed document becomes a new version; keys follow the latest unless pinned.',
  usage: 'policies apply <file> [--json]',
  options: { json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [file]) {
    const doc = await load(file ?? '');
    const r = await withDb(ctx, (db) => applyPolicy(db, doc));
    if (v.json) ctx.json(r);
    else
      ctx.print(
        r.created
          ? `policy '${r.name}' is now version ${r.version}`
          : `policy '${r.name}' unchanged (version ${r.version})`,
      );
  },
});

const list = command({
  name: 'list',
  summary: 'List policies with their latest version, tools and active keys.',
  usage: 'policies list [--json]',
  options: { json: { type: 'boolean' } },
  async run(ctx, v) {
    const rows = await withDb(ctx, (db) => listPolicies(db));
    if (v.json) ctx.json(rows);
    else
      ctx.io.stdout(
        table(
          rows.map((r) => ({ ...r, tools: r.tools.join(',') })),
          ['name', 'latest_version', 'tools', 'active_keys', 'updated_at'],
        ),
      );
  },
});

const show = command({
  name: 'show',
  summary: 'Print a stored policy (latest version, or --version V) as YAML, or JSON with --json.',
  usage: 'policies show <name> [--version V] [--json]',
  options: { version: { type: 'string' }, json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [name]) {
    const version = v.version !== undefined ? Number(v.version) : undefined;
    const doc = await withDb(ctx, (db) => policyDocument(db, name ?? '', version));
    if (!doc)
      throw new CliError(`no policy '${name ?? ''}'${version ? ` version ${version}` : ''}`, EXIT.notFound);
    if (v.json) ctx.json(doc);
    else ctx.io.stdout(`# ${name ?? ''} version ${doc.version}\n${toYaml(doc.document)}`);
  },
});

function lines(doc: unknown): string[] {
  return toYaml(JSON.parse(canonicalJson(doc)) as unknown)
    .trimEnd()
    .split('\n');
}

const diff = command({
  name: 'diff',
  summary: 'Show what changed: the latest version against the previous one, or against a file (--file).',
  usage: 'policies diff <name> [--file F] [--from V] [--to V]',
  options: { file: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [name]) {
    const policy = name ?? '';
    const [before, after] = await withDb(ctx, async (db) => {
      const to = await policyDocument(db, policy, v.to ? Number(v.to) : undefined);
      if (!to) throw new CliError(`no policy '${policy}'`, EXIT.notFound);
      if (v.file) return [to, { version: 'file', document: await load(v.file) }] as const;
      const fromVersion = v.from ? Number(v.from) : to.version - 1;
      const from = fromVersion >= 1 ? await policyDocument(db, policy, fromVersion) : undefined;
      return [from ?? { version: 0, document: {} }, to] as const;
    });
    const a = lines(before.document);
    const b = lines(after.document);
    ctx.print(
      `--- ${policy} ${before.version ? `v${before.version}` : '(nothing)'}\n+++ ${policy} ${typeof after.version === 'number' ? `v${after.version}` : after.version}`,
    );
    // A line diff of canonical YAML (sorted keys) is enough to read a policy change.
    const setA = new Set(a);
    const setB = new Set(b);
    let changed = 0;
    for (const l of a) {
      if (setB.has(l)) continue;
      ctx.print(`- ${l}`);
      changed++;
    }
    for (const l of b) {
      if (setA.has(l)) continue;
      ctx.print(`+ ${l}`);
      changed++;
    }
    if (!changed) ctx.print('(no changes)');
  },
});

export const policiesCommands: CommandGroup = {
  name: 'policies',
  commands: [apply, list, show, validate, diff],
};
