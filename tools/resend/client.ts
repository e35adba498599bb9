import type { Resend, Response as ResendResponse } from 'resend';
import type { VendorSpec } from '../../src/pipeline/tool.js';
import { resendError } from './errors.js';
import { startResendFake } from './sandbox.js';

/** The Resend SDK behind leash's timeout and error mapping. */
export interface ResendClient {
  /** Runs one SDK call with the timeout enforced; returns its data or throws a VendorError (no secrets). */
  call<T>(run: (sdk: Resend, signal: AbortSignal) => Promise<ResendResponse<T>>): Promise<T>;
}

const DEFAULT_BASE_URL = 'https://api.resend.com';

let sandbox: Promise<{ baseUrl: string; secret: Record<string, string> }> | undefined;

export const resendVendor: VendorSpec<ResendClient> = {
  name: 'resend',
  secretFields: { api_key: 'RESEND_API_KEY' },
  async createClient(credential, { timeoutMs }) {
    const { Resend: ResendSdk } = await import('resend'); // loaded on first use: keeps startup fast
    const key = credential.secret.api_key;
    if (!key) throw new Error(`resend credential '${credential.name}' has no api_key`);
    const secrets = Object.values(credential.secret);
    // `baseUrl` and `userAgent` are constructor options; passing both keeps the SDK from reading RESEND_* env vars.
    const sdk = new ResendSdk(key, {
      baseUrl: (credential.baseUrl ?? DEFAULT_BASE_URL).replace(/\/+$/, ''),
      userAgent: 'leash (resend-node)',
    });
    return {
      async call(run) {
        // Every SDK method passes `signal` through to fetch; the SDK then returns `{ error }` instead of throwing.
        const signal = AbortSignal.timeout(timeoutMs);
        let res;
        try {
          res = await run(sdk, signal);
        } catch (cause) {
          throw resendError({ timedOut: signal.aborted, timeoutMs, secrets, cause });
        }
        if (res.error) {
          const timedOut = signal.aborted && res.error.statusCode === null; // an HTTP answer beats our timer
          throw resendError({ error: res.error, timedOut, timeoutMs, secrets });
        }
        return res.data;
      },
    };
  },
  sandbox() {
    sandbox ??= startResendFake().then((fake) => {
      fake.unref(); // the shared sandbox must not keep a finished leash process alive
      return { baseUrl: fake.url, secret: { api_key: 're_sandbox' } };
    });
    return sandbox;
  },
};
