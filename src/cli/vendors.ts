import { listCredentials, removeCredential, setCredential } from '../credentials/credentials.js';
import { withDb } from './with-db.js';
import { CliError, EXIT, command, table, type CommandGroup } from './command.js';
import { catalog } from './runtime.js';

function vendorFields(vendor: string): Readonly<Record<string, string>> {
  const spec = catalog.vendors.get(vendor);
  if (!spec)
    throw new CliError(
      `unknown vendor '${vendor}' (known: ${[...catalog.vendors.keys()].join(', ')})`,
      EXIT.usage,
    );
  return spec.secretFields;
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
  usage:
    'vendors set <stripe|twilio|resend> [--name N] (--secret-stdin | --from-env VAR…) [--base-url URL] [--account ACCT]',
  help: [
    '--name N          credential name (default "default"); policies pick it with vendors.<v>.credential',
    '--secret-stdin    read the secret from stdin (never from argv); stored encrypted under the master key',
    '                  twilio: JSON {"account_sid":…,"auth_token":…} or field=value lines',
    '--from-env VAR    read the secret from this env var at call time (twilio: account_sid=VAR auth_token=VAR)',
    "--base-url URL    send this credential's calls to another base URL (stripe-mock, a proxy)",
    '--account ACCT    Stripe connected account (Stripe-Account header)',
  ],
  options: {
    name: { type: 'string', default: 'default' },
    'secret-stdin': { type: 'boolean' },
    'from-env': { type: 'string', multiple: true },
    'base-url': { type: 'string' },
    account: { type: 'string' },
    json: { type: 'boolean' },
  },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [vendor]) {
    const name = vendor ?? '';
    const fields = vendorFields(name);
    if (Boolean(v['secret-stdin']) === Boolean(v['from-env']?.length))
      throw new CliError('give exactly one of --secret-stdin or --from-env', EXIT.usage);
    if (!/^[a-z0-9][a-z0-9_-]*$/.test(v.name))
      throw new CliError('--name: lower-case letters, digits, "-" and "_"', EXIT.usage);
    if (v['base-url'] && !/^https?:\/\/\S+$/.test(v['base-url']))
      throw new CliError('--base-url must be an http(s) URL', EXIT.usage);
    const secret = v['secret-stdin'] ? parseSecret(name, fields, (await ctx.io.stdin?.()) ?? '') : undefined;
    const envVars = v['from-env']?.length ? parseEnvMapping(name, fields, v['from-env']) : undefined;
    await withDb(ctx, (db) =>
      setCredential(db, ctx.config(), {
        vendor: name,
        name: v.name,
        ...(secret ? { secret } : {}),
        ...(envVars ? { envVars } : {}),
        baseUrl: v['base-url'],
        account: v.account,
      }),
    );
    if (v.json) ctx.json({ vendor: name, name: v.name, source: secret ? 'encrypted' : 'env' });
    else
      ctx.print(
        `${name}/${v.name} saved (${secret ? 'encrypted' : `from env ${Object.values(envVars ?? {}).join(', ')}`})`,
      );
  },
});

const list = command({
  name: 'list',
  summary: 'List vendor credentials and whether each is usable. Never prints a secret.',
  usage: 'vendors list [--json]',
  options: { json: { type: 'boolean' } },
  async run(ctx, v) {
    const fields = Object.fromEntries([...catalog.vendors.values()].map((s) => [s.name, s.secretFields]));
    const rows = await withDb(ctx, (db) => listCredentials(db, ctx.config(), fields));
    if (v.json) ctx.json(rows);
    else
      ctx.io.stdout(
        table(
          rows.map((r) => ({ ...r, env_vars: r.env_vars?.join(',') ?? null, ready: r.ready ? 'yes' : 'no' })),
          ['vendor', 'name', 'source', 'env_vars', 'base_url', 'account', 'ready'],
        ),
      );
  },
});

const remove = command({
  name: 'remove',
  summary: 'Remove a stored vendor credential.',
  usage: 'vendors remove <vendor> [--name N]',
  options: { name: { type: 'string', default: 'default' } },
  positionals: { min: 1, max: 1 },
  async run(ctx, v, [vendor]) {
    vendorFields(vendor ?? '');
    const removed = await withDb(ctx, (db) => removeCredential(db, vendor ?? '', v.name));
    if (!removed) throw new CliError(`no stored credential ${vendor ?? ''}/${v.name}`, EXIT.notFound);
    ctx.print(`${vendor ?? ''}/${v.name} removed`);
  },
});

export const vendorsCommands: CommandGroup = {
  name: 'vendors',
  commands: [set, list, remove],
};
