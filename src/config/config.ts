import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { checkSecretShapes, type SecretShape } from './secret-shape.js';
import { deriveAuditKey, KEY_TEXT_RULE, keyBytes, masterKeyPath } from './server-keys.js';
import type { VendorDeclaration } from './vendor-declaration.js';

/** Error for a configuration that cannot be used; its message is already readable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

const url = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' });

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** An authorization server's issuer: https (http only on loopback, for a local identity provider), no query or fragment. */
const issuerUrl = url.max(500).refine((u) => {
  const parsed = new URL(u);
  return (
    (parsed.protocol === 'https:' || LOOPBACK_HOSTS.has(parsed.hostname)) && !parsed.search && !parsed.hash
  );
}, 'expected an https URL without query or fragment (http only for localhost)');

/** An RFC 6749 scope token: printable ASCII without space, quote or backslash. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/;

/** The optional config file (`$LEASH_HOME/config.json` or `LEASH_CONFIG`); vendors add their price keys. */
const fileShape = {
  fx_rates: z
    .record(z.string().regex(/^[A-Z]{3}$/, 'currency codes are 3 upper-case letters'), z.number().positive())
    .optional(),
  alert_webhook_url: url.optional(),
  admin_token: z.string().min(24).optional(),
  approval_link_secret: z.string().min(24).optional(),
  public_url: url.optional(),
};

/** The environment leash reads; vendors add their base URL variables. */
const envShape = {
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// URL')
    .optional(),
  LEASH_HOME: z.string().min(1).optional(),
  LEASH_CONFIG: z.string().min(1).optional(),
  LEASH_MASTER_KEY: z.string().min(1).optional(),
  LEASH_AUDIT_KEY: z
    .string()
    .trim()
    .transform((t) => (/^(?:[0-9a-f]{2})+$/i.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64')))
    .refine((k) => k.length >= 32, 'LEASH_AUDIT_KEY must be at least 32 bytes (64 hex characters or base64)')
    .optional(),
  LEASH_ADMIN_TOKEN: z.string().min(24, 'LEASH_ADMIN_TOKEN must be at least 24 characters').optional(),
  LEASH_APPROVAL_LINK_SECRET: z
    .string()
    .min(24, 'LEASH_APPROVAL_LINK_SECRET must be at least 24 characters')
    .optional(),
  LEASH_PUBLIC_URL: url.optional(),
  LEASH_OAUTH_ISSUER: issuerUrl.optional(),
  LEASH_OAUTH_AUDIENCE: z
    .string()
    .max(500)
    .refine(
      (t) => URL.canParse(t),
      'expected an absolute URI (the aud your identity provider puts in tokens for leash)',
    )
    .optional(),
  LEASH_OAUTH_SCOPES: z
    .string()
    .max(2000)
    .transform((t) => t.split(/[\s,]+/).filter(Boolean))
    .refine((list) => list.length <= 20, 'at most 20 scopes')
    .refine(
      (list) => list.every((s) => SCOPE_TOKEN.test(s)),
      'scopes are 1-128 printable characters without spaces, quotes or backslashes, separated by spaces',
    )
    .optional(),
  LEASH_OAUTH_INTROSPECTION_CLIENT_ID: z.string().min(1).max(256).optional(),
  LEASH_OAUTH_INTROSPECTION_CLIENT_SECRET: z.string().min(1).max(1024).optional(),
  LEASH_ALERT_WEBHOOK_URL: url.optional(),
  LEASH_VAULT_KEY: z.string().optional(),
  LEASH_LOG: z.enum(['silent', 'error', 'info', 'debug']).optional(),
  LEASH_DB_POOL_MAX: z.coerce.number().int().min(1).max(200).optional(),
  LEASH_DB_POOL_WAIT_MS: z.coerce.number().int().min(100).max(600_000).optional(),
  LEASH_AUTH_FAILURES_PER_MINUTE: z.coerce.number().int().min(1).max(100_000).optional(),
  LEASH_TRUST_PROXY_HOPS: z.coerce.number().int().min(0).max(10).optional(),
  LEASH_VENDOR_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).optional(),
  LEASH_UNKNOWN_ALERT_AGE: z
    .string()
    .trim()
    .regex(/^\d{1,7}[smh]?$/, 'expected an age like 900, 90s, 15m or 2h')
    .transform((t) => Number(t.replace(/[smh]$/, '')) * ({ s: 1, m: 60, h: 3600 }[t.at(-1) ?? ''] ?? 1))
    .optional(),
};

type FileValues = z.infer<z.ZodObject<typeof fileShape>>;
type EnvValues = z.infer<z.ZodObject<typeof envShape>>;

export type Config = Readonly<{
  databaseUrl: string | undefined;
  home: string;
  masterKey: string | undefined;
  /**
   * HMAC key for the hashes the audit log keeps of agent arguments: LEASH_AUDIT_KEY, else derived from the master
   * key (LEASH_MASTER_KEY or $LEASH_HOME/master.key), else undefined ("unkeyed": a public key, brute-forceable).
   */
  auditKey: Buffer | undefined;
  /** Where auditKey came from. */
  auditKeySource: 'LEASH_AUDIT_KEY' | 'master key' | 'none';
  adminToken: string | undefined;
  /** Signs approval links (default: derived from the admin token). */
  approvalLinkSecret: string | undefined;
  /** Where approvers reach `leash serve` (approval links); default the address it listens on. */
  publicUrl: string | undefined;
  alertWebhookUrl: string | undefined;
  /**
   * leash as an OAuth 2.1 resource server (LEASH_OAUTH_ISSUER set), else undefined and nothing about OAuth is
   * advertised. `audience` (the aud tokens must carry) defaults to leash's public /mcp URL, known once it listens.
   */
  oauth: OAuthConfig | undefined;
  /** Vendor name → base URL from the vendor's env var (e.g. LEASH_<VENDOR>_BASE_URL). */
  baseUrls: Readonly<Record<string, string>>;
  vaultKey: string | undefined;
  logLevel: 'silent' | 'error' | 'info' | 'debug';
  poolMax: number;
  /** How long a call may wait for a free database connection before it is refused (audit_unavailable). */
  poolWaitMs: number;
  /** Wrong vault keys / admin tokens one client address may present per minute over HTTP before 429. */
  authFailuresPerMinute: number;
  /** Proxies in front of `leash serve` that append X-Forwarded-For (0: the socket's peer is the client). */
  trustProxyHops: number;
  /** How long a vendor call may take before its outcome is `unknown` (reconcile settles it). */
  vendorTimeoutMs: number;
  /** Seconds a call's outcome may stay `unknown` before operators are told (alert, console, audit query). */
  unknownAlertAgeSeconds: number;
  /** USD per one unit of a currency, e.g. { EUR: 1.08 }. USD is always 1. */
  fxRates: Readonly<Record<string, number>>;
  /** Vendor prices by price-sheet key (e.g. `sms_price_micros`), validated and defaulted by the vendor's sheet. */
  prices: Readonly<Record<string, unknown>>;
  /** Vendor secrets as the vendors' own env vars name them; read only by src/credentials. */
  vendorEnv: Readonly<Record<string, string>>;
  /** The rest of the environment, for credentials stored as `--from-env VAR`; read only by src/credentials. */
  extraEnv: Readonly<Record<string, string | undefined>>;
}>;

export type OAuthConfig = Readonly<{
  issuer: string;
  audience: string | undefined;
  /** Scopes every token must carry (LEASH_OAUTH_SCOPES, default leash:tools). */
  scopes: readonly string[];
  /** Client credentials for the issuer's introspection endpoint (RFC 7662), for opaque tokens; read only by src/server/oauth. */
  introspection: Readonly<{ clientId: string; clientSecret: string }> | undefined;
}>;

function oauthOf(e: EnvValues): OAuthConfig | undefined {
  const id = e.LEASH_OAUTH_INTROSPECTION_CLIENT_ID;
  const secret = e.LEASH_OAUTH_INTROSPECTION_CLIENT_SECRET;
  if ((id === undefined) !== (secret === undefined))
    throw new ConfigError(
      'invalid configuration: set both LEASH_OAUTH_INTROSPECTION_CLIENT_ID and LEASH_OAUTH_INTROSPECTION_CLIENT_SECRET, or neither',
    );
  if (!e.LEASH_OAUTH_ISSUER) {
    const stray = (
      ['LEASH_OAUTH_AUDIENCE', 'LEASH_OAUTH_SCOPES', 'LEASH_OAUTH_INTROSPECTION_CLIENT_ID'] as const
    ).find((name) => e[name] !== undefined);
    if (stray) throw new ConfigError(`invalid configuration: ${stray} is set but LEASH_OAUTH_ISSUER is not`);
    return undefined;
  }
  return Object.freeze({
    issuer: e.LEASH_OAUTH_ISSUER,
    audience: e.LEASH_OAUTH_AUDIENCE,
    scopes: Object.freeze(e.LEASH_OAUTH_SCOPES?.length ? e.LEASH_OAUTH_SCOPES : ['leash:tools']),
    introspection: id && secret ? Object.freeze({ clientId: id, clientSecret: secret }) : undefined,
  });
}

function describe(error: z.ZodError, where: string): string {
  return `invalid configuration in ${where}:\n${z.prettifyError(error)}`;
}

/** A vendor secret env var: when set, its value has the vendor's declared shape (the error never shows it). */
function secretVar(vendor: string, field: string, envVar: string, shape: SecretShape) {
  return z
    .string()
    .optional()
    .superRefine((value, ctx) => {
      if (!value) return; // empty counts as unset, as below
      const { problems } = checkSecretShapes(
        vendor,
        { [field]: value },
        { [field]: shape },
        (f) => `${f} (${envVar})`,
      );
      for (const message of problems) ctx.addIssue({ code: 'custom', message });
    });
}

/** The one schema: leash's own keys plus what each vendor declares (base URL variable, secret shapes, price key). */
function schemas(vendors: readonly VendorDeclaration[]) {
  const envExtra: Record<string, z.ZodType> = {};
  const fileExtra: Record<string, z.ZodType> = {};
  for (const v of vendors) {
    envExtra[v.env.baseUrl] = url.optional();
    for (const [field, envVar] of Object.entries(v.env.secrets)) {
      const shape = v.env.shapes?.[field];
      if (shape) envExtra[envVar] = secretVar(v.name, field, envVar, shape);
    }
    if (v.pricing) fileExtra[v.pricing.key] = v.pricing.schema.optional();
  }
  return {
    env: z.object(envShape).extend(envExtra),
    file: z.strictObject(fileShape).extend(fileExtra),
  };
}

function readFile(file: string, schema: z.ZodType): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    throw new ConfigError(`invalid configuration in ${file}: not valid JSON`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(describe(parsed.error, file));
  return parsed.data as Record<string, unknown>; // a strict object schema parses to an object
}

/** LEASH_AUDIT_KEY, else HKDF of the master key (env or the file `leash init` writes), else none. */
function auditKeyOf(
  e: EnvValues,
  home: string,
): { auditKey: Buffer | undefined; auditKeySource: Config['auditKeySource'] } {
  if (e.LEASH_AUDIT_KEY) return { auditKey: e.LEASH_AUDIT_KEY, auditKeySource: 'LEASH_AUDIT_KEY' };
  const file = masterKeyPath({ home });
  // A master key that is there but unusable fails loudly: silently unkeyed, replicas would disagree on digests.
  const decode = (text: string, where: string): Buffer => {
    const key = keyBytes(text);
    if (!key) throw new ConfigError(`invalid configuration: ${where} ${KEY_TEXT_RULE}`);
    return key;
  };
  let master: Buffer | undefined;
  if (e.LEASH_MASTER_KEY) master = decode(e.LEASH_MASTER_KEY, 'LEASH_MASTER_KEY');
  else if (existsSync(file)) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      throw new ConfigError(`invalid configuration: cannot read the master key ${file} (${code})`);
    }
    master = decode(text, file);
  }
  return master
    ? { auditKey: deriveAuditKey(master), auditKeySource: 'master key' }
    : { auditKey: undefined, auditKeySource: 'none' };
}

/**
 * Parses env (and the optional config file) once; the result is frozen. Throws ConfigError. Vendor variables
 * and price keys come from the vendors' declarations, which the composition root takes from the tool catalog.
 */
export function loadConfig(env: NodeJS.ProcessEnv, vendors: readonly VendorDeclaration[]): Config {
  const schema = schemas(vendors);
  const parsedEnv = schema.env.safeParse(env);
  if (!parsedEnv.success) throw new ConfigError(describe(parsedEnv.error, 'environment'));
  // Vendor keys are declared at run time, so they type as unknown; leash's own keys keep their schema types.
  const all = parsedEnv.data as EnvValues & Record<string, unknown>;
  const e: EnvValues = all;
  const home = resolve(e.LEASH_HOME ?? join(homedir(), '.leash'));
  const path = e.LEASH_CONFIG ?? join(home, 'config.json');
  let file: Record<string, unknown> = {};
  if (existsSync(path)) file = readFile(path, schema.file);
  else if (e.LEASH_CONFIG) throw new ConfigError(`LEASH_CONFIG points at ${path}, which does not exist`);
  const fromFile = file as FileValues; // parsed by the schema built on fileShape above
  const vendorEnv: Record<string, string> = {};
  const baseUrls: Record<string, string> = {};
  const prices: Record<string, unknown> = {};
  for (const v of vendors) {
    for (const name of Object.values(v.env.secrets)) {
      const value = env[name];
      if (value) vendorEnv[name] = value;
    }
    const base = all[v.env.baseUrl];
    if (typeof base === 'string' && base) baseUrls[v.name] = base;
    if (v.pricing) prices[v.pricing.key] = Object.freeze(v.pricing.resolve(file[v.pricing.key]));
  }
  return Object.freeze({
    databaseUrl: e.DATABASE_URL,
    home,
    masterKey: e.LEASH_MASTER_KEY,
    ...auditKeyOf(e, home),
    adminToken: e.LEASH_ADMIN_TOKEN ?? fromFile.admin_token,
    approvalLinkSecret: e.LEASH_APPROVAL_LINK_SECRET ?? fromFile.approval_link_secret,
    publicUrl: e.LEASH_PUBLIC_URL ?? fromFile.public_url,
    alertWebhookUrl: e.LEASH_ALERT_WEBHOOK_URL ?? fromFile.alert_webhook_url,
    oauth: oauthOf(e),
    baseUrls: Object.freeze(baseUrls),
    vaultKey: e.LEASH_VAULT_KEY,
    logLevel: e.LEASH_LOG ?? 'info',
    poolMax: e.LEASH_DB_POOL_MAX ?? 10,
    poolWaitMs: e.LEASH_DB_POOL_WAIT_MS ?? 5000,
    authFailuresPerMinute: e.LEASH_AUTH_FAILURES_PER_MINUTE ?? 20,
    trustProxyHops: e.LEASH_TRUST_PROXY_HOPS ?? 0,
    vendorTimeoutMs: e.LEASH_VENDOR_TIMEOUT_MS ?? 20_000,
    unknownAlertAgeSeconds: e.LEASH_UNKNOWN_ALERT_AGE ?? 900,
    fxRates: Object.freeze({ ...fromFile.fx_rates, USD: 1 }),
    prices: Object.freeze(prices),
    vendorEnv: Object.freeze(vendorEnv),
    extraEnv: Object.freeze({ ...env }),
  });
}
