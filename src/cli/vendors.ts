import {
  envSecret,
  listCredentials,
  removeCredential,
  resolveCredential,
  secretForms,
  setCredential,
  type CredentialInfo,
} from '../credentials/credentials.js';
import { loadMasterKey } from '../credentials/master-key.js';
import { checkSecretShapes } from '../config/secret-shape.js';
import { VendorError } from '../pipeline/errors.js';
import { announce, BY_HELP, BY_OPTION, cliActor } from './acting.js';
import { withDb } from './with-db.js';
import { CliError, EXIT, command, type CommandGroup, type Context } from './command.js';
import { catalog } from './runtime.js';

function vendorFields(vendor: string): Readonly<Record<string, string>> {
  const spec = catalog.vendors.get(vendor);
  if (!spec)
    throw new CliError(
      `unknown vendor '${vendor}' (known: ${[...catalog.vendors.keys()].join(', ')})`,
      EXIT.usage,
    );
  return spec.env.secrets;
}

/** Secret from stdin: a bare value for one-field vendors; JSON or field=value lines otherwise. */
export function parseSecret(
  vendor: string,
  fields: Readonly<Record<string, string>>,
  text: string,
): Record<string, string> {
  const names = Object.keys(fields);
  const trimmed = text.trim();
  if (!trimmed) throw new CliError('no secret on stdin', EXIT.usage);
  let secret: Record<string, string> = {};
  if (trimmed.startsWith('{')) {
    try {
      secret = JSON.parse(trimmed) as Record<string, string>;
    } catch {
      throw new CliError('stdin starts with { but is not valid JSON', EXIT.usage);
    }
  } else if (names.length === 1 && !trimmed.includes('\n')) {
    secret = { [names[0] ?? '']: trimmed };
  } else {
    for (const line of trimmed.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) secret[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
  }
  const missing = names.filter((n) => typeof secret[n] !== 'string' || !secret[n]);
  const extra = Object.keys(secret).filter((n) => !names.includes(n));
  if (missing.length || extra.length) {
    throw new CliError(
      `${vendor} needs ${names.join(' and ')} on stdin${names.length > 1 ? ' (as JSON or field=value lines)' : ''}; missing: ${missing.join(', ') || 'none'}, unknown: ${extra.join(', ') || 'none'}`,
      EXIT.usage,
    );
  }
  return secret;
}

function parseEnvMapping(
  vendor: string,
  fields: Readonly<Record<string, string>>,
  values: string[],
): Record<string, string> {
  const names = Object.keys(fields);
  const mapping: Record<string, string> = {};
  for (const v of values) {
    const i = v.indexOf('=');
    if (i < 0 && names.length === 1) mapping[names[0] ?? ''] = v;
    else if (i > 0) mapping[v.slice(0, i)] = v.slice(i + 1);
    else
      throw new CliError(
        `--from-env for ${vendor} takes field=VAR (fields: ${names.join(', ')})`,
        EXIT.usage,
      );
  }
  for (const [field, envVar] of Object.entries(mapping)) {
    if (!names.includes(field))
      throw new CliError(
        `${vendor} has no secret field '${field}' (fields: ${names.join(', ')})`,
        EXIT.usage,
      );
    if (!/^[A-Z_][A-Z0-9_]*$/.test(envVar))
      throw new CliError(`'${envVar}' is not an environment variable name`, EXIT.usage);
  }
  const missing = names.filter((n) => !mapping[n]);
  if (missing.length)
    throw new CliError(`--from-env is missing ${missing.map((m) => `${m}=VAR`).join(', ')}`, EXIT.usage);
  return mapping;
}

const set = command({
  name: 'set',
  summary: 'Store a named vendor credential: encrypted (AES-256-GCM) from stdin, or a reference to env vars.',
  usage: `vendors set <${[...catalog.vendors.keys()].join('|')}> [--name N] (--secret-stdin | --from-env VAR…) [--base-url URL] [--account ACCT] [--by NAME]`,
  help: [
    '--name N          credential name (default "default"); policies pick it with vendors.<v>.credential',
    '--secret-stdin    read the secret from stdin (never from argv); stored encrypted under the master key',
    '                  A vendor with several fields: JSON {"field":…} or field=value lines.',
    '--from-env VAR    read the secret from this env var at call time (several fields: field=VAR each)',
    '--allow-unset     with --from-env: store the reference even though the variable is not set here',
    '                  (it is set only where leash serve runs)',
    "--base-url URL    send this credential's calls to another base URL (a mock, a proxy)",
    '--account ACCT    the vendor account calls are routed to (e.g. a connected account or subaccount)',
    BY_HELP,
  ],
  options: {
    name: { type: 'string', default: 'default' },
    'secret-stdin': { type: 'boolean' },
    'from-env': { type: 'string', multiple: true },
    'base-url': { type: 'string' },
    account: { type: 'string' },
    'allow-unset': { type: 'boolean' },
    ...BY_OPTION,
    json: { type: 'boolean' },
  },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [vendor]) {
    const name = vendor ?? '';
    const fields = vendorFields(name);
    const by = cliActor(ctx, v.by);
    if (Boolean(v['secret-stdin']) === Boolean(v['from-env']?.length))
      throw new CliError('give exactly one of --secret-stdin or --from-env', EXIT.usage);
    if (!/^[a-z0-9][a-z0-9_-]*$/.test(v.name))
      throw new CliError('--name: lower-case letters, digits, "-" and "_"', EXIT.usage);
    if (v['base-url'] && !/^https?:\/\/\S+$/.test(v['base-url']))
      throw new CliError('--base-url must be an http(s) URL', EXIT.usage);
    const secret = v['secret-stdin'] ? parseSecret(name, fields, (await ctx.io.stdin?.()) ?? '') : undefined;
    const envVars = v['from-env']?.length ? parseEnvMapping(name, fields, v['from-env']) : undefined;
    const unset = Object.values(envVars ?? {}).filter((e) => !envValue(ctx, e));
    if (unset.length && !v['allow-unset'])
      throw new CliError(
        `${unset.join(', ')} ${unset.length > 1 ? 'are' : 'is'} not set in this environment; export ${unset.length > 1 ? 'them' : 'it'} first, or pass --allow-unset if only the server has ${unset.length > 1 ? 'them' : 'it'}`,
        EXIT.usage,
      );
    if (unset.length) ctx.warn(`${unset.join(', ')} is not set here; the credential works only where it is`);
    // Shapes before the database: a malformed credential is refused here, naming the field, and nothing is stored.
    const shapes = catalog.vendors.get(name)?.env.shapes;
    const shape = checkSecretShapes(name, secret ?? envSecret(ctx.config(), envVars ?? {}), shapes, (f) =>
      envVars ? `${f} (${envVars[f] ?? '?'})` : f,
    );
    if (shape.problems.length) throw new CliError(shape.problems.join('; '), EXIT.usage);
    for (const w of shape.warnings) ctx.warn(w);
    await withDb(ctx, (db) =>
      setCredential(
        db,
        ctx.config(),
        {
          vendor: name,
          name: v.name,
          ...(secret ? { secret } : {}),
          ...(envVars ? { envVars } : {}),
          baseUrl: v['base-url'],
          account: v.account,
          shapes,
        },
        by,
      ),
    );
    await announce(ctx, {
      type: 'operator_action',
      action: 'credential.set',
      target: `credential:${name}/${v.name}`,
      by: by.name,
      via: by.via,
    });
    if (v.json) ctx.json({ vendor: name, name: v.name, source: secret ? 'encrypted' : 'env' });
    else
      ctx.print(
        `${name}/${v.name} saved (${secret ? 'encrypted' : `from env ${Object.values(envVars ?? {}).join(', ')}`})`,
      );
  },
});

function envValue(ctx: Context, name: string): string | undefined {
  const config = ctx.config();
  return config.vendorEnv[name] ?? config.extraEnv[name] ?? undefined;
}

/** Why a credential cannot be used from here, or null when it can. */
async function notReadyReason(ctx: Context, c: CredentialInfo): Promise<string | null> {
  if (c.source === 'env') {
    const unset = (c.env_vars ?? []).filter((e) => !envValue(ctx, e));
    return unset.length ? `${unset.join(', ')} not set in this environment` : null;
  }
  try {
    await loadMasterKey(ctx.config());
    return null;
  } catch (error) {
    return `master key unavailable: ${error instanceof Error ? error.message : 'unreadable'}`;
  }
}

const list = command({
  name: 'list',
  summary: 'List vendor credentials and whether each is usable. Never prints a secret.',
  usage: 'vendors list [--json]',
  options: { json: { type: 'boolean' } },
  async run(ctx, v) {
    const fields = Object.fromEntries([...catalog.vendors.values()].map((s) => [s.name, s.env.secrets]));
    const listed = await withDb(ctx, (db) => listCredentials(db, ctx.config(), fields));
    const rows = [];
    for (const r of listed) {
      const reason = await notReadyReason(ctx, r);
      rows.push({ ...r, ready: r.ready && !reason, not_ready_reason: reason });
    }
    if (v.json) return void ctx.json(rows);
    ctx.table(
      rows.map((r) => ({
        ...r,
        env_vars: r.env_vars?.join(',') ?? null,
        ready: r.ready ? 'yes' : `no: ${r.not_ready_reason ?? 'unknown'}`,
      })),
      // At 80 columns: whether each credential is ready (and why not, cut to fit) before where it comes from.
      [
        { name: 'vendor', priority: 0 },
        { name: 'name', priority: 0 },
        { name: 'source', priority: 2 },
        { name: 'env_vars', priority: 4 },
        { name: 'base_url', priority: 5 },
        { name: 'account', priority: 3 },
        { name: 'ready', priority: 1, cut: true, min: 24 },
        { name: 'updated_by', priority: 6 },
      ],
      (column, text) => (column !== 'ready' ? undefined : text === 'yes' ? 'green' : 'red'),
    );
  },
});

const remove = command({
  name: 'remove',
  summary: 'Remove a stored vendor credential.',
  usage: 'vendors remove <vendor> [--name N] [--by NAME]',
  help: ['--name N     credential name (default "default")', BY_HELP],
  options: { name: { type: 'string', default: 'default' }, ...BY_OPTION },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [vendor]) {
    vendorFields(vendor ?? '');
    const by = cliActor(ctx, v.by);
    const removed = await withDb(ctx, (db) => removeCredential(db, vendor ?? '', v.name, by));
    if (!removed) throw new CliError(`no stored credential ${vendor ?? ''}/${v.name}`, EXIT.notFound);
    await announce(ctx, {
      type: 'operator_action',
      action: 'credential.remove',
      target: `credential:${vendor ?? ''}/${v.name}`,
      by: by.name,
      via: by.via,
    });
    if (ctx.jsonMode) ctx.json({ vendor, name: v.name, removed: true });
    else ctx.print(`${vendor ?? ''}/${v.name} removed`);
  },
});

const check = command({
  name: 'check',
  summary:
    'Prove a credential works: one harmless read call at the vendor (never a write). Exit 1 if it fails.',
  usage: 'vendors check <vendor> [--name N] [--json]',
  help: ['--name N  credential name (default "default")'],
  options: { name: { type: 'string', default: 'default' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [vendor = '']) {
    const fields = vendorFields(vendor);
    const spec = catalog.vendors.get(vendor);
    const credential = await withDb(ctx, async (db) => {
      try {
        return await resolveCredential(db, ctx.config(), vendor, v.name, fields, spec?.env.shapes);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        throw new CliError(message, /^no credential/.test(message) ? EXIT.notFound : EXIT.failure);
      }
    });
    if (!spec?.check) throw new CliError(`${vendor} declares no credential check`, EXIT.failure);
    const started = performance.now();
    let ok = true;
    let kind: string | null = null;
    let detail: string;
    try {
      detail = await spec.check(await spec.createClient(credential, { timeoutMs: 10_000 }));
    } catch (error) {
      ok = false;
      // A VendorError says what went wrong (auth: the vendor refused the credential); anything else by its name.
      if (error instanceof VendorError) {
        kind = error.kind;
        const status = error.status === undefined ? '' : ` (HTTP ${error.status})`;
        detail = `${error.kind === 'auth' ? 'credential rejected' : error.kind}${status}: ${error.message}`;
      } else detail = error instanceof Error ? `${error.name}: ${error.message}` : 'failed';
    }
    // The client guard scrubs vendor errors already; no form of the secret may reach the terminal either way.
    for (const form of secretForms(credential.secret)) detail = detail.split(form).join('[redacted]');
    const ms = Math.round(performance.now() - started);
    if (ctx.jsonMode) ctx.json({ vendor, name: v.name, ok, kind, detail, ms });
    else ctx.print(`${vendor}/${v.name}: ${ok ? 'works' : 'FAILED'} (${detail}, ${ms} ms)`);
    return ok ? EXIT.ok : EXIT.failure;
  },
});

export const vendorsCommands: CommandGroup = {
  name: 'vendors',
  commands: [set, list, check, remove],
};
