import type { Resend, Response as ResendResponse } from 'resend';
import { z } from 'zod';
import { VendorError } from '../../src/pipeline/errors.js';
import { guardClient } from '../../src/vendor-kit/client-guard.js';
import { definePriceSheet } from '../../src/config/vendor-declaration.js';
import type { VendorSpec } from '../../src/pipeline/vendor-spec.js';
import { createForwarder, type Forwarder } from '../../src/vendor-kit/forward.js';
import { resendError, ResendReturnedError } from './errors.js';
import { RESEND_RESPONSE_HEADERS } from './http-shape.js';
import { resendSandbox } from './sandbox.js';

/** The Resend SDK behind the client guard; Resend returns `{ data, error }`, so `run` unwraps it. */
export interface ResendClient {
  /** Runs one SDK call with the timeout enforced; returns its data or throws a VendorError (no secrets). */
  run<T>(call: (sdk: Resend, signal: AbortSignal) => Promise<ResendResponse<T>>): Promise<T>;
  /** The REST front door's raw pass-through, with this credential (see http.ts). */
  forward: Forwarder;
}

const DEFAULT_BASE_URL = 'https://api.resend.com';

/** micro-USD per email recipient (config file `email_price_micros`). */
export const emailPrices = definePriceSheet<number>({
  key: 'email_price_micros',
  schema: z.number().int().nonnegative(),
  resolve: (fromFile) => fromFile ?? 400,
});

export const resendVendor: VendorSpec<ResendClient> = {
  name: 'resend',
  env: {
    baseUrl: 'LEASH_RESEND_BASE_URL',
    secrets: { api_key: 'RESEND_API_KEY' },
    shapes: {
      api_key: {
        pattern: /^re_[0-9A-Za-z_]+$/,
        expected: 'an API key, "re_" followed by letters and digits',
      },
    },
  },
  pricing: emailPrices,
  async createClient(credential, { timeoutMs }) {
    const { Resend: ResendSdk } = await import('resend'); // loaded on first use: keeps startup fast
    const key = credential.secret.api_key;
    if (!key) throw new Error(`resend credential '${credential.name}' has no api_key`);
    // `baseUrl` and `userAgent` are constructor options; passing both keeps the SDK from reading RESEND_* env vars.
    const sdk = new ResendSdk(key, {
      baseUrl: (credential.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, ''),
      userAgent: 'leash (resend-node)',
    });
    const guarded = guardClient(sdk, {
      vendor: 'resend',
      map: resendError,
      secrets: Object.values(credential.secret),
      timeoutMs,
    });
    const forward = createForwarder({
      vendor: 'resend',
      baseUrl: credential.baseUrl ?? DEFAULT_BASE_URL,
      auth: { authorization: `Bearer ${key}` },
      secrets: Object.values(credential.secret),
      keepHeaders: RESEND_RESPONSE_HEADERS,
      timeoutMs,
    });
    return {
      forward,
      // Every SDK method passes `signal` through to fetch; the SDK then returns `{ error }` instead of throwing.
      run: (call) =>
        guarded.run(async (s, signal) => {
          const res = await call(s, signal);
          if (res.error) throw new ResendReturnedError(res.error, res.headers);
          return res.data;
        }),
    };
  },
  sandbox: resendSandbox,
  async check(client) {
    // GET /emails?limit=1. A bad key fails as VendorError kind 'auth' (403 invalid_api_key, 401 missing_api_key);
    // a sending-only key is authenticated but may not read (401 restricted_api_key): it works, with a caveat.
    try {
      await client.run((sdk, signal) => sdk.emails.list({ limit: 1 }, { signal }));
      return 'authenticated (full access)';
    } catch (error) {
      if (error instanceof VendorError && error.vendorCode === 'restricted_api_key')
        return 'authenticated (sending-only key: can send, cannot read sent emails)';
      throw error;
    }
  },
};
