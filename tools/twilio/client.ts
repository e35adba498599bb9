import type twilio from 'twilio';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
import type { VendorSpec } from '../../src/pipeline/tool.js';
import { twilioError, TwilioResponseError, type TwilioHttpResponse } from './errors.js';
import { twilioSandbox } from './sandbox.js';

/** The Twilio SDK behind one guard: whatever a call throws comes out as one scrubbed VendorError. */
export interface TwilioClient {
  run<T>(call: (api: twilio.Twilio) => Promise<T>): Promise<T>;
}

type SdkRequest = RequestClient.RequestOptions<Record<string, unknown>, Record<string, unknown>>;

/** Form or query encoding as the SDK's own client does it (arrays repeat the key). */
function encode(values: Record<string, unknown> | undefined): URLSearchParams {
  const out = new URLSearchParams();
  for (const [key, value] of Object.entries(values ?? {})) {
    const items: unknown[] = Array.isArray(value) ? value : [value];
    for (const item of items) {
      if (typeof item === 'string') out.append(key, item);
      else if (typeof item === 'number' || typeof item === 'boolean') out.append(key, String(item));
      else if (item !== undefined && item !== null) out.append(key, JSON.stringify(item));
    }
  }
  return out;
}

/** Where a request goes: a base URL override (a fake, the sandbox) replaces every *.twilio.com host. */
function target(uri: string, params: Record<string, unknown> | undefined, baseUrl: string | undefined): URL {
  const url = new URL(uri);
  if (baseUrl && (url.hostname === 'twilio.com' || url.hostname.endsWith('.twilio.com'))) {
    const base = new URL(baseUrl);
    url.protocol = base.protocol;
    url.host = base.host;
    url.pathname = base.pathname.replace(/\/$/, '') + url.pathname;
  }
  for (const [key, value] of encode(params)) url.searchParams.append(key, value);
  return url;
}

/**
 * The SDK's RequestClient contract (lib/base/BaseTwilio.js calls only `request(opts)` and reads
 * `{ statusCode, body, headers }`), on Node's fetch with a hard timeout. Error answers are thrown here so
 * the request id header survives (the SDK's RestException keeps no headers).
 */
function fetchClient(baseUrl: string | undefined, timeoutMs: number) {
  return {
    async request(opts: SdkRequest): Promise<TwilioHttpResponse> {
      const headers: Record<string, string> = { ...opts.headers };
      if (opts.username && opts.password) {
        headers.Authorization = `Basic ${Buffer.from(`${opts.username}:${opts.password}`).toString('base64')}`;
      } else if (opts.authStrategy) {
        headers.Authorization = await opts.authStrategy.getAuthString();
      }
      const hasBody = opts.data !== undefined && (opts.method === 'post' || opts.method === 'put');
      const res = await fetch(target(opts.uri, opts.params, baseUrl), {
        method: opts.method.toUpperCase(),
        headers,
        ...(hasBody ? { body: encode(opts.data) } : {}),
        redirect: opts.allowRedirects ? 'follow' : 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
      const response = {
        statusCode: res.status,
        body: await res.text(),
        headers: Object.fromEntries(res.headers),
      };
      if (res.status >= 400) throw new TwilioResponseError(response);
      return response;
    },
  };
}

/** The real Twilio SDK on leash's fetch client; `credential.account` routes calls to a subaccount. */
export const twilioVendor: VendorSpec<TwilioClient> = {
  name: 'twilio',
  secretFields: { account_sid: 'TWILIO_ACCOUNT_SID', auth_token: 'TWILIO_AUTH_TOKEN' },
  async createClient(credential, { timeoutMs }) {
    const { default: twilioSdk } = await import('twilio'); // loaded on first use: keeps startup fast
    const { account_sid: sid = '', auth_token: token = '' } = credential.secret;
    const api = twilioSdk(sid, token, {
      // The SDK types httpClient as its axios class, but only ever calls request() on it (BaseTwilio.js).
      httpClient: fetchClient(credential.baseUrl, timeoutMs) as unknown as RequestClient,
      ...(credential.account ? { accountSid: credential.account } : {}),
    });
    const secrets = [sid, token];
    return {
      async run(call) {
        try {
          return await call(api);
        } catch (error) {
          throw twilioError(error, secrets);
        }
      },
    };
  },
  sandbox: twilioSandbox,
};
