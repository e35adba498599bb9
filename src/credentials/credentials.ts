import { sql } from 'kysely';
import type { Config } from '../config/config.js';
import type { Db } from '../db/database.js';
import { CredentialError, loadMasterKey, open, seal } from './master-key.js';

/** What a vendor needs as its secret: field name → the vendor's usual env var (e.g. secret_key → STRIPE_SECRET_KEY). */
export type SecretFields = Readonly<Record<string, string>>;

/** A credential ready for a vendor client. Holds raw secrets: never log, return or audit it. */
export interface ResolvedCredential {
  vendor: string;
  name: string;
  secret: Readonly<Record<string, string>>;
  baseUrl?: string;
  account?: string;
}

export interface CredentialInfo {
  vendor: string;
  name: string;
  source: 'env' | 'encrypted';
  env_vars: string[] | null;
  base_url: string | null;
  account: string | null;
  updated_at: Date | null;
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
 */
export async function resolveCredential(
  db: Db,
  config: Config,
  vendor: string,
  name: string,
  fields: SecretFields,
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
    secret = fromEnv(config, vendor, name, JSON.parse(row.env_var ?? '{}') as SecretFields);
  } else {
    const key = await loadMasterKey(config);
    secret = JSON.parse(open(key, row.ciphertext ?? Buffer.alloc(0), `${vendor}/${name}`)) as Record<
      string,
      string
    >;
  }
  const out: ResolvedCredential = { vendor, name, secret };
  const base = config.baseUrls[vendor as keyof Config['baseUrls']] ?? row?.base_url ?? undefined;
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
}

/** Creates or replaces a named vendor credential. */
export async function setCredential(db: Db, config: Config, c: SetCredential): Promise<void> {
  if (!c.secret === !c.envVars) throw new CredentialError('give either a secret or env var names, not both');
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
  };
  await db
    .insertInto('vendor_credentials')
    .values(values)
    .onConflict((oc) =>
      oc.columns(['vendor', 'name']).doUpdateSet({ ...values, updated_at: sql<Date>`now()` }),
    )
    .execute();
}

export async function removeCredential(db: Db, vendor: string, name: string): Promise<boolean> {
  const r = await db
    .deleteFrom('vendor_credentials')
    .where('vendor', '=', vendor)
    .where('name', '=', name)
    .executeTakeFirst();
  return r.numDeletedRows > 0n;
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
      base_url: config.baseUrls[vendor as keyof Config['baseUrls']] ?? null,
      account: null,
      updated_at: null,
      ready: envVars.every((v) => Boolean(config.vendorEnv[v])),
    });
  }
  return out.sort((a, b) => (a.vendor + a.name).localeCompare(b.vendor + b.name));
}
