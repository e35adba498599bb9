import type { z } from 'zod';
import type { SecretShapes } from './secret-shape.js';

/** What a vendor needs as its secret: field name → the env var the vendor's own docs use for it. */
export type SecretFields = Readonly<Record<string, string>>;

/**
 * A vendor's prices as the config file states them: one top-level key of the config file, its schema, and
 * the value when the file does not set it. Config validates it once at start; tools read it with `read`.
 */
export interface PriceSheet<T = unknown> {
  /** The config file key, e.g. `sms_price_micros`. */
  key: string;
  schema: z.ZodType<T>;
  /** The prices in effect, from the file's value (undefined when the file does not set it). */
  resolve(fromFile: T | undefined): T;
  /** This sheet's prices from the prices config holds. */
  read(prices: Readonly<Record<string, unknown>>): T;
}

/** Declares a price sheet; `read` returns exactly what config stored for this key through `resolve`. */
export function definePriceSheet<T>(o: Omit<PriceSheet<T>, 'read'>): PriceSheet<T> {
  return {
    ...o,
    read(prices) {
      const value = prices[o.key];
      // Config stored resolve(schema.parse(file value)) under this key, so the value has this sheet's type.
      return value === undefined ? o.resolve(undefined) : (value as T);
    },
  };
}

/**
 * What config needs to know of a vendor: the env vars it reads and its prices. No client, no SDK. The composition
 * root (the CLI's runtime) hands the catalog's declarations to `loadConfig`; config never imports the catalog.
 */
export interface VendorDeclaration {
  name: string;
  env: {
    /** Env var that points every call to another base URL (a mock, a proxy), e.g. LEASH_<VENDOR>_BASE_URL. */
    baseUrl: string;
    /** The vendor's secret fields and the env vars its own docs use for them. */
    secrets: SecretFields;
    /** What each secret field looks like: checked when a credential is set, and for the env vars at start. */
    shapes?: SecretShapes;
  };
  pricing?: PriceSheet;
}
