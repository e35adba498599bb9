import type twilio from 'twilio';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
import { z } from 'zod';
import { guardClient, type GuardedClient } from '../../src/vendor-kit/client-guard.js';
import { definePriceSheet } from '../../src/config/vendor-declaration.js';
import type { VendorSpec } from '../../src/pipeline/vendor-spec.js';
import { createForwarder, type Forwarder } from '../../src/vendor-kit/forward.js';
import {
  twilioError,
  TwilioResponseError,
  TwilioUnreadableError,
  type TwilioHttpResponse,
} from './errors.js';
import { TWILIO_RESPONSE_HEADERS } from './http-shape.js';
import { twilioSandbox } from './sandbox.js';

/** The Twilio SDK behind the client guard: whatever a call throws comes out as one scrubbed VendorError. */
export type TwilioClient = GuardedClient<twilio.Twilio> & {
  /** The REST front door's raw pass-through, with this credential (see http.ts). */
  forward: Forwarder;
  /** The account calls go to (a subaccount when the credential names one): the REST door puts it in the path. */
  accountSid: string;
};

/** micro-USD per SMS segment by destination prefix (config file `sms_price_micros`); `default` when none matches. */
export const smsPrices = definePriceSheet<Readonly<Record<string, number>>>({
  key: 'sms_price_micros',
  schema: z.record(
    z.string().regex(/^\+\d{1,4}$|^default$/, 'expected a "+<country code>" prefix or "default"'),
    z.number().int().nonnegative(),
  ),
  resolve: (fromFile) => ({ default: 8300, ...fromFile }),
});

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

/** Every answer of the Twilio API leash calls is a JSON object (the SDK parses it; garbage must not reach it). */
function isJsonObject(text: string): boolean {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v);
  } catch {
    return false;
  }
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
      if (!isJsonObject(response.body)) throw new TwilioUnreadableError(res.status, response.headers);
      return response;
    },
  };
}

/** The real Twilio SDK on leash's fetch client; `credential.account` routes calls to a subaccount. */
export const twilioVendor: VendorSpec<TwilioClient> = {
  name: 'twilio',
  env: {
    baseUrl: 'LEASH_TWILIO_BASE_URL',
    secrets: { account_sid: 'TWILIO_ACCOUNT_SID', auth_token: 'TWILIO_AUTH_TOKEN' },
    // As Twilio's console shows them. leash authenticates as the account (no API keys: the SID is the path too).
    shapes: {
      account_sid: {
        pattern: /^AC[0-9a-fA-F]{32}$/,
        expected: 'an account SID, "AC" followed by 32 hex digits',
        mistakes: [
          {
            pattern: /^SK/,
            hint: 'an API key SID (SK…): leash takes the account SID (AC…) and its auth token',
          },
        ],
      },
      auth_token: { pattern: /^[0-9a-fA-F]{32}$/, expected: 'an auth token of 32 hex digits' },
    },
  },
  pricing: smsPrices,
  async createClient(credential, { timeoutMs }) {
    const { default: twilioSdk } = await import('twilio'); // loaded on first use: keeps startup fast
    const { account_sid: sid = '', auth_token: token = '' } = credential.secret;
    const api = twilioSdk(sid, token, {
      // The SDK types httpClient as its axios class, but only ever calls request() on it (BaseTwilio.js).
      httpClient: fetchClient(credential.baseUrl, timeoutMs) as unknown as RequestClient,
      ...(credential.account ? { accountSid: credential.account } : {}),
    });
    const forward = createForwarder({
      vendor: 'twilio',
      baseUrl: credential.baseUrl ?? 'https://api.twilio.com',
      auth: { authorization: `Basic ${Buffer.from(`${sid}:${token}`).toString('base64')}` },
      secrets: [sid, token],
      keepHeaders: TWILIO_RESPONSE_HEADERS,
      timeoutMs,
    });
    const guarded = guardClient(api, {
      vendor: 'twilio',
      map: twilioError,
      secrets: [sid, token],
      timeoutMs,
    });
    return { run: (call) => guarded.run(call), forward, accountSid: credential.account ?? sid };
  },
  sandbox: twilioSandbox,
  async check(client) {
    // GET /2010-04-01/Accounts/{sid}.json: the account calls are routed to (a subaccount when one is set).
    // A bad SID or token fails as VendorError kind 'auth' (HTTP 401). Only name, status and type are reported.
    const account = await client.run((api) => api.api.v2010.account.fetch());
    const name = account.friendlyName ? `'${account.friendlyName.slice(0, 64)}'` : 'account';
    return `authenticated: ${name} (${[account.status, account.type].filter(Boolean).join(', ') || 'no status'})`;
  },
};
