// Covers config built from the vendors' declarations it is handed: base URL variables, secret env vars and price keys
// (the config file keys as before), and that unknown keys and bad values are still errors.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { smsPrices } from '../../tools/twilio/client.js';
import { emailPrices } from '../../tools/resend/client.js';
import { catalogVendors } from '../../tools/index.js';
import { ConfigError, loadConfig as loadWith } from './config.js';

/** As the CLI loads it: with the catalog's vendors. */
const loadConfig = (env: NodeJS.ProcessEnv) => loadWith(env, catalogVendors);

function withFile(content: unknown): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'leash-config-'));
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(content));
  return { LEASH_HOME: dir, LEASH_CONFIG: path };
}

describe('loadConfig', () => {
  it('takes the vendor call timeout from LEASH_VENDOR_TIMEOUT_MS, 20 s by default, and names a bad value', () => {
    expect(loadConfig({ LEASH_HOME: '/nonexistent' }).vendorTimeoutMs).toBe(20_000);
    expect(loadConfig({ LEASH_HOME: '/nonexistent', LEASH_VENDOR_TIMEOUT_MS: '1500' }).vendorTimeoutMs).toBe(
      1500,
    );
    expect(() => loadConfig({ LEASH_HOME: '/nonexistent', LEASH_VENDOR_TIMEOUT_MS: 'soon' })).toThrow(
      /LEASH_VENDOR_TIMEOUT_MS/,
    );
  });

  it('takes the age an unknown outcome is alerted at from LEASH_UNKNOWN_ALERT_AGE, 15 min by default', () => {
    const age = (v?: string) =>
      loadConfig({ LEASH_HOME: '/nonexistent', ...(v === undefined ? {} : { LEASH_UNKNOWN_ALERT_AGE: v }) })
        .unknownAlertAgeSeconds;
    expect([age(), age('600'), age('90s'), age('15m'), age('2h')]).toEqual([900, 600, 90, 900, 7200]);
    expect(() => age('soon')).toThrow(/LEASH_UNKNOWN_ALERT_AGE/);
  });

  it('reads each vendor base URL and secret from the env vars its folder declares', () => {
    const config = loadConfig({
      LEASH_HOME: '/nonexistent',
      LEASH_TWILIO_BASE_URL: 'http://127.0.0.1:9',
      STRIPE_SECRET_KEY: 'sk_test_x',
    });
    expect(config.baseUrls).toEqual({ twilio: 'http://127.0.0.1:9' });
    expect(config.vendorEnv).toEqual({ STRIPE_SECRET_KEY: 'sk_test_x' });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('prices from the vendors defaults, and from the config file keys as before', () => {
    expect(smsPrices.read(loadConfig({ LEASH_HOME: '/nonexistent' }).prices)).toEqual({ default: 8300 });
    const config = loadConfig(withFile({ sms_price_micros: { '+44': 4000 }, email_price_micros: 900 }));
    expect(smsPrices.read(config.prices)).toEqual({ default: 8300, '+44': 4000 });
    expect(emailPrices.read(config.prices)).toBe(900);
  });

  it.each([
    ['an unknown config file key', withFile({ surprise: 1 }), 'surprise'],
    ['a bad price', withFile({ sms_price_micros: { nope: 1 } }), 'sms_price_micros'],
    ['a bad vendor base URL', { LEASH_RESEND_BASE_URL: 'ftp://x' }, 'LEASH_RESEND_BASE_URL'],
  ])('refuses %s, naming it', (_name, env, needle) => {
    expect(() => loadConfig({ LEASH_HOME: '/nonexistent', ...env })).toThrow(ConfigError);
    expect(() => loadConfig({ LEASH_HOME: '/nonexistent', ...env })).toThrow(needle);
  });

  it('knows only the vendors it is handed: their variables and price keys mean nothing without them', () => {
    const env = {
      LEASH_HOME: '/nonexistent',
      LEASH_TWILIO_BASE_URL: 'http://127.0.0.1:9',
      STRIPE_SECRET_KEY: 'x',
    };
    const config = loadWith(env, []);
    expect([config.baseUrls, config.vendorEnv, config.prices]).toEqual([{}, {}, {}]);
    expect(() => loadWith(withFile({ sms_price_micros: { '+44': 4000 } }), [])).toThrow('sms_price_micros');
  });
});
