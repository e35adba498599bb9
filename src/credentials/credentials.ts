import { sql } from 'kysely';
import type { Config } from '../config/config.js';
import { checkSecretShapes, type SecretShapes } from '../config/secret-shape.js';
import type { SecretFields } from '../config/vendor-declaration.js';
import { actorName, recordAction, SYSTEM_ACTOR, type Actor } from '../audit/operator-actions.js';
import { durableCommit, type Db } from '../db/database.js';
import { CredentialError, loadMasterKey, open, seal } from './master-key.js';

/** A credential ready for a vendor client. Holds raw secrets: never log, return or audit it. */
export interface ResolvedCredential {
  vendor: string;
  name: string;
  secret: Readonly<Record<string, string>>;
  baseUrl?: string;
  account?: string;
}

/** Shortest secret (or encoded core of one) worth scrubbing: shorter strings would redact ordinary text. */
const MIN_FORM = 6;

/**
 * The base64 text that encodes `value` wherever it sits inside a longer encoded string: for each of the three
 * byte alignments, the characters that depend on `value`'s bytes alone (so `base64("x:" + token)` is caught
 * through `token`'s core even when the pair was never listed).
 */
function base64Cores(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const out: string[] = [];
  for (let lead = 0; lead < 3; lead++) {
    const padded = Buffer.concat([Buffer.alloc(lead), bytes]);
    const first = lead === 0 ? 0 : 3; // the group holding filler bytes depends on them
    const last = Math.floor(padded.length / 3) * 3; // a trailing partial group depends on what follows
    if (last - first < 6) continue;
    out.push(padded.subarray(first, last).toString('base64'));
  }
  return out;
}

function encodings(value: string): string[] {
  const b64 = Buffer.from(value, 'utf8').toString('base64');
  const cores = base64Cores(value);
  return [
    value,
    encodeURIComponent(value),
    new URLSearchParams({ v: value }).toString().slice(2), // form encoding (space as +)
    b64,
    b64.replace(/=+$/, ''),
    Buffer.from(value, 'utf8').toString('base64url'),
    ...cores,
    ...cores.map((c) => c.replace(/\+/g, '-').replace(/\//g, '_')),
  ];
}

/**
 * Every form in which a credential's secrets could come back from a vendor: each value plain, URL-encoded and
 * base64 (standard and URL-safe, at any alignment), and each `user:secret` basic-auth pair (`id:token`,
 * `key:`) plain and encoded. Longest first, so a pair is redacted whole.
 */
export function secretForms(secret: Readonly<Record<string, string>> | readonly string[]): string[] {
  const values = [...new Set(Array.isArray(secret) ? secret : Object.values(secret))].filter(
    (v): v is string => typeof v === 'string' && v.length > 0,
  );
  const forms = new Set<string>();
  for (const v of values) {
    for (const f of encodings(v)) forms.add(f);
    for (const pair of [`${v}:`, `:${v}`]) for (const f of encodings(pair)) forms.add(f);
    for (const other of values) if (other !== v) for (const f of encodings(`${v}:${other}`)) forms.add(f);
  }
  return [...forms].filter((f) => f.length >= MIN_FORM).sort((a, b) => b.length - a.length);
}

export interface CredentialInfo {
  vendor: string;
  name: string;
  source: 'env' | 'encrypted';
  env_vars: string[] | null;
  base_url: string | null;
  account: string | null;
  updated_at: Date | null;
  /** Who set it last (null for the env default and for rows set before leash recorded it). */
  updated_by: string | null;
  ready: boolean;
}

function fromEnv(
  config: Config,
  vendor: string,
  name: string,
  mapping: SecretFields,
): Record<string, string> {
  const secret: Record<string, string> = {};
  const missing: string[] = [];
  for (const [field, envVar] of Object.entries(mapping)) {
    const value = config.vendorEnv[envVar] ?? config.extraEnv[envVar];
    if (value) secret[field] = value;
    else missing.push(envVar);
  }
  if (missing.length)
    throw new CredentialError(`credential ${vendor}/${name} needs ${missing.join(', ')} in the environment`);
  return secret;
}

/**
 * Finds the named credential for a vendor: a stored row (env or encrypted), or for `default` the vendor's
 * usual env vars. LEASH_<VENDOR>_BASE_URL overrides any base URL. The only code that reads a raw vendor key.
 * A `--from-env` reference whose variable holds a malformed value (per `shapes`) throws, naming the variable.
 */
export async function resolveCredential(
  db: Db,
  config: Config,
  vendor: string,
  name: string,
  fields: SecretFields,
  shapes?: SecretShapes,
): Promise<ResolvedCredential> {
  const row = await db
    .selectFrom('vendor_credentials')
    .selectAll()
    .where('vendor', '=', vendor)
    .where('name', '=', name)
    .executeTakeFirst();
  let secret: Record<string, string>;
  if (!row) {
    if (name !== 'default')
      throw new CredentialError(
        `no credential named '${name}' for ${vendor}; add it with 'leash vendors set ${vendor} --name ${name}'`,
      );
    secret = fromEnv(config, vendor, name, fields);
  } else if (row.source === 'env') {
    const mapping = JSON.parse(row.env_var ?? '{}') as SecretFields;
    secret = fromEnv(config, vendor, name, mapping);
    // The variable is read here, on the server, and may hold something else than where it was set.
    assertShapes(vendor, name, secret, shapes, (f) => `${f} (${mapping[f] ?? '?'})`);
  } else {
    const key = await loadMasterKey(config);
    secret = JSON.parse(open(key, row.ciphertext ?? Buffer.alloc(0), `${vendor}/${name}`)) as Record<
      string,
      string
    >;
  }
  const out: ResolvedCredential = { vendor, name, secret };
  const base = config.baseUrls[vendor] ?? row?.base_url ?? undefined;
  if (base) out.baseUrl = base;
  if (row?.account) out.account = row.account;
  return out;
}

export interface SetCredential {
  vendor: string;
  name: string;
  /** Raw secret fields, stored encrypted; or env var names to read at call time. */
  secret?: Record<string, string>;
  envVars?: Record<string, string>;
  baseUrl?: string | undefined;
  account?: string | undefined;
  /** The vendor's secret shapes: a malformed value (given, or in a named variable that is set) stores nothing. */
  shapes?: SecretShapes | undefined;
}

/** Throws a CredentialError listing every malformed field (never a value). */
function assertShapes(
  vendor: string,
  name: string,
  secret: Readonly<Record<string, string | undefined>>,
  shapes: SecretShapes | undefined,
  label?: (field: string) => string,
): void {
  const { problems } = checkSecretShapes(vendor, secret, shapes, label);
  if (problems.length) throw new CredentialError(`credential ${vendor}/${name}: ${problems.join('; ')}`);
}

/** The value of each field of an env-var mapping that is set in this environment. */
export function envSecret(config: Config, mapping: SecretFields): Record<string, string | undefined> {
  return Object.fromEntries(
    Object.entries(mapping).map(([field, envVar]) => [
      field,
      config.vendorEnv[envVar] ?? config.extraEnv[envVar] ?? undefined,
    ]),
  );
}

/**
 * Creates or replaces a named vendor credential. Checks shapes first: a malformed credential stores nothing. `by` is
 * recorded on the row (`updated_by`) and as an operator action (never the secret), in the same transaction.
 */
export async function setCredential(
  db: Db,
  config: Config,
  c: SetCredential,
  by: Actor = SYSTEM_ACTOR,
): Promise<void> {
  if (!c.secret === !c.envVars) throw new CredentialError('give either a secret or env var names, not both');
  if (c.secret) assertShapes(c.vendor, c.name, c.secret, c.shapes);
  const mapping = c.envVars;
  if (mapping)
    assertShapes(
      c.vendor,
      c.name,
      envSecret(config, mapping),
      c.shapes,
      (f) => `${f} (${mapping[f] ?? '?'})`,
    );
  const ciphertext = c.secret
    ? seal(await loadMasterKey(config, true), JSON.stringify(c.secret), `${c.vendor}/${c.name}`)
    : null;
  const values = {
    vendor: c.vendor,
    name: c.name,
    source: c.secret ? ('encrypted' as const) : ('env' as const),
    env_var: c.envVars ? JSON.stringify(c.envVars) : null,
    ciphertext,
    base_url: c.baseUrl ?? null,
    account: c.account ?? null,
    updated_by: actorName(by),
  };
  await db.transaction().execute(async (trx) => {
    await durableCommit(trx);
    await trx
      .insertInto('vendor_credentials')
      .values(values)
      .onConflict((oc) =>
        oc.columns(['vendor', 'name']).doUpdateSet({ ...values, updated_at: sql<Date>`now()` }),
      )
      .execute();
    // What changed, never the secret: where it comes from, and the routing settings.
    await recordAction(trx, by, 'credential.set', `credential:${c.vendor}/${c.name}`, {
      source: values.source,
      ...(c.envVars ? { env_vars: Object.values(c.envVars) } : {}),
      base_url: values.base_url,
      account: values.account,
    });
  });
}

/** Removes a stored credential and records `by`, in one transaction; false when there was none. */
export async function removeCredential(
  db: Db,
  vendor: string,
  name: string,
  by: Actor = SYSTEM_ACTOR,
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    await durableCommit(trx);
    const r = await trx
      .deleteFrom('vendor_credentials')
      .where('vendor', '=', vendor)
      .where('name', '=', name)
      .executeTakeFirst();
    if (r.numDeletedRows === 0n) return false;
    await recordAction(trx, by, 'credential.remove', `credential:${vendor}/${name}`);
    return true;
  });
}

/** Lists credentials without secrets: stored rows plus env defaults for the given vendors. */
export async function listCredentials(
  db: Db,
  config: Config,
  vendors: Readonly<Record<string, SecretFields>>,
): Promise<CredentialInfo[]> {
  const rows = await db
    .selectFrom('vendor_credentials')
    .selectAll()
    .orderBy('vendor')
    .orderBy('name')
    .execute();
  const out: CredentialInfo[] = rows.map((r) => {
    const envVars = r.env_var ? Object.values(JSON.parse(r.env_var) as Record<string, string>) : null;
    return {
      vendor: r.vendor,
      name: r.name,
      source: r.source,
      env_vars: envVars,
      base_url: r.base_url,
      account: r.account,
      updated_at: r.updated_at,
      updated_by: r.updated_by,
      ready:
        r.source === 'encrypted' ||
        (envVars ?? []).every((v) => Boolean(config.vendorEnv[v] ?? config.extraEnv[v])),
    };
  });
  for (const [vendor, fields] of Object.entries(vendors)) {
    if (out.some((c) => c.vendor === vendor && c.name === 'default')) continue;
    const envVars = Object.values(fields);
    out.push({
      vendor,
      name: 'default',
      source: 'env',
      env_vars: envVars,
      base_url: config.baseUrls[vendor] ?? null,
      account: null,
      updated_at: null,
      updated_by: null,
      ready: envVars.every((v) => Boolean(config.vendorEnv[v])),
    });
  }
  return out.sort((a, b) => (a.vendor + a.name).localeCompare(b.vendor + b.name));
}
