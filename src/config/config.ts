import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';

/** Error for a configuration that cannot be used; its message is already readable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

const url = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' });
const positiveMicros = z.number().int().nonnegative();

/** The optional config file (`$LEASH_HOME/config.json` or `LEASH_CONFIG`). Unknown keys are errors. */
const fileSchema = z.strictObject({
  fx_rates: z
    .record(z.string().regex(/^[A-Z]{3}$/, 'currency codes are 3 upper-case letters'), z.number().positive())
    .optional(),
  sms_price_micros: z
    .record(
      z.string().regex(/^\+\d{1,4}$|^default$/, 'expected a "+<country code>" prefix or "default"'),
      positiveMicros,
    )
    .optional(),
  email_price_micros: positiveMicros.optional(),
  alert_webhook_url: url.optional(),
  admin_token: z.string().min(24).optional(),
});

const envSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// URL')
    .optional(),
  LEASH_HOME: z.string().min(1).optional(),
  LEASH_CONFIG: z.string().min(1).optional(),
  LEASH_MASTER_KEY: z.string().min(1).optional(),
  LEASH_ADMIN_TOKEN: z.string().min(24, 'LEASH_ADMIN_TOKEN must be at least 24 characters').optional(),
  LEASH_ALERT_WEBHOOK_URL: url.optional(),
  LEASH_STRIPE_BASE_URL: url.optional(),
  LEASH_TWILIO_BASE_URL: url.optional(),
  LEASH_RESEND_BASE_URL: url.optional(),
  LEASH_VAULT_KEY: z.string().optional(),
  LEASH_LOG: z.enum(['silent', 'error', 'info', 'debug']).optional(),
  LEASH_DB_POOL_MAX: z.coerce.number().int().min(1).max(200).optional(),
});

export type Config = Readonly<{
  databaseUrl: string | undefined;
  home: string;
  masterKey: string | undefined;
  adminToken: string | undefined;
  alertWebhookUrl: string | undefined;
  baseUrls: Readonly<{ stripe?: string; twilio?: string; resend?: string }>;
  vaultKey: string | undefined;
  logLevel: 'silent' | 'error' | 'info' | 'debug';
  poolMax: number;
  /** USD per one unit of a currency, e.g. { EUR: 1.08 }. USD is always 1. */
  fxRates: Readonly<Record<string, number>>;
  /** micro-USD per SMS segment, by destination prefix; `default` applies when none matches. */
  smsPriceMicros: Readonly<Record<string, number>>;
  /** micro-USD per email recipient. */
  emailPriceMicros: number;
  /** Vendor secrets as the vendors' own env vars name them; read only by src/credentials. */
  vendorEnv: Readonly<Record<string, string>>;
  /** The rest of the environment, for credentials stored as `--from-env VAR`; read only by src/credentials. */
  extraEnv: Readonly<Record<string, string | undefined>>;
}>;

const VENDOR_ENV = [
  'STRIPE_SECRET_KEY',
  'TWILIO_ACCOUNT_SID',
  'TWILIO_AUTH_TOKEN',
  'RESEND_API_KEY',
] as const;

function describe(error: z.ZodError, where: string): string {
  return `invalid configuration in ${where}:\n${z.prettifyError(error)}`;
}

/** Parses env (and the optional config file) once; the result is frozen. Throws ConfigError. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsedEnv = envSchema.safeParse(env);
  if (!parsedEnv.success) throw new ConfigError(describe(parsedEnv.error, 'environment'));
  const e = parsedEnv.data;
  const home = resolve(e.LEASH_HOME ?? join(homedir(), '.leash'));
  const file = e.LEASH_CONFIG ?? join(home, 'config.json');
  let fromFile: z.infer<typeof fileSchema> = {};
  if (existsSync(file)) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      throw new ConfigError(`invalid configuration in ${file}: not valid JSON`);
    }
    const parsed = fileSchema.safeParse(raw);
    if (!parsed.success) throw new ConfigError(describe(parsed.error, file));
    fromFile = parsed.data;
  } else if (e.LEASH_CONFIG) {
    throw new ConfigError(`LEASH_CONFIG points at ${file}, which does not exist`);
  }
  const vendorEnv: Record<string, string> = {};
  for (const name of VENDOR_ENV) {
    const value = env[name];
    if (value) vendorEnv[name] = value;
  }
  const baseUrls: { stripe?: string; twilio?: string; resend?: string } = {};
  if (e.LEASH_STRIPE_BASE_URL) baseUrls.stripe = e.LEASH_STRIPE_BASE_URL;
  if (e.LEASH_TWILIO_BASE_URL) baseUrls.twilio = e.LEASH_TWILIO_BASE_URL;
  if (e.LEASH_RESEND_BASE_URL) baseUrls.resend = e.LEASH_RESEND_BASE_URL;
  return Object.freeze({
    databaseUrl: e.DATABASE_URL,
    home,
    masterKey: e.LEASH_MASTER_KEY,
    adminToken: e.LEASH_ADMIN_TOKEN ?? fromFile.admin_token,
    alertWebhookUrl: e.LEASH_ALERT_WEBHOOK_URL ?? fromFile.alert_webhook_url,
    baseUrls: Object.freeze(baseUrls),
    vaultKey: e.LEASH_VAULT_KEY,
    logLevel: e.LEASH_LOG ?? 'info',
    poolMax: e.LEASH_DB_POOL_MAX ?? 10,
    fxRates: Object.freeze({ ...fromFile.fx_rates, USD: 1 }),
    smsPriceMicros: Object.freeze({ default: 8300, ...fromFile.sms_price_micros }),
    emailPriceMicros: fromFile.email_price_micros ?? 400,
    vendorEnv: Object.freeze(vendorEnv),
    extraEnv: Object.freeze({ ...env }),
  });
}
