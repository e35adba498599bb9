// A bench for vendor faults: the three vendor fakes (which can hang, fail, answer garbage, reset or rate-limit on
// request: `inject`), one pipeline whose vendor calls give up after `timeoutMs`, the REST door on a real HTTP server,
// the MCP door through a real MCP client, and the vendors' own SDKs pointed at leash.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Resend } from 'resend';
import Stripe from 'stripe';
import twilio from 'twilio';
import type { RequestOptions } from 'twilio/lib/base/RequestClient.js';
import { createLogger } from '../../src/config/logger.js';
import { createPipeline, type PipelineDeps } from '../../src/pipeline/run-tool.js';
import { createAuthThrottle } from '../../src/server/auth-throttle.js';
import { startHttpServer, type RunningHttp } from '../../src/server/http.js';
import { createMcpServer } from '../../src/server/mcp.js';
import { restRoutes } from '../../src/server/rest.js';
import { catalog, vendorApis } from '../../tools/index.js';
import { startResendFake, type ResendFake } from '../../tools/resend/sandbox.js';
import { startStripeFake, type StripeFake } from '../../tools/stripe/sandbox.js';
import { startTwilioFake, type TwilioFake } from '../../tools/twilio/sandbox.js';
import { freshDatabase, type TestDatabase } from './database.js';
import { applyTestPolicy, testConfig } from './governance.js';
import { CANARIES } from './vendors.js';

export const FROM = 'Support <support@acme.com>';
export const SMS_FROM = '+15550001111';
export const POLICY = 'faults';

/** Every tool and write endpoint of the three vendors, so each can be faulted through both doors. */
const policy = {
  name: POLICY,
  limits: { per_key_daily_usd: 1000 },
  tools: {
    issue_refund: { max_amount_usd: 100 },
    send_sms: { from: SMS_FROM, to_prefixes: ['+1'] },
    send_email: { from: FROM, to_domains: ['acme.com'] },
    get_budget: {},
  },
  vendors: {
    stripe: { http: { 'POST /v1/refunds': { max_amount_usd: 100 } } },
    twilio: {
      http: {
        'POST /2010-04-01/Accounts/{AccountSid}/Messages.json': { from: SMS_FROM, to_prefixes: ['+1'] },
      },
    },
    resend: { http: { 'POST /emails': { from: FROM, to_domains: ['acme.com'] } } },
  },
};

export interface FaultBench {
  tdb: TestDatabase;
  stripe: StripeFake;
  twilio: TwilioFake;
  resend: ResendFake;
  deps: PipelineDeps;
  http: RunningHttp;
  /** stripe-node pointed at the REST door (`retries`: its maxNetworkRetries, 0 unless given). */
  stripeSdk(key: string, retries?: number): Stripe;
  /** twilio-node, its requests sent to the REST door (it has no base-URL option). */
  twilioSdk(key: string): twilio.Twilio;
  resendSdk(key: string): Resend;
  /** Calls a tool over MCP as the key, through a real MCP client and the server `leash mcp` runs. */
  callTool(key: string, name: string, args: Record<string, unknown>): Promise<CallToolResult>;
  close(): Promise<void>;
}

/** The account the agent's SDK names (any AC… SID: the credential's account is the one used). */
export const AGENT_SID = `AC${'0'.repeat(32)}`;

export async function startFaultBench(o: { timeoutMs: number }): Promise<FaultBench> {
  const tdb = await freshDatabase(8);
  const [stripe, twilioFake, resend] = await Promise.all([
    startStripeFake(false),
    startTwilioFake(),
    startResendFake(),
  ]);
  const config = testConfig({
    ...CANARIES,
    LEASH_STRIPE_BASE_URL: stripe.url,
    LEASH_TWILIO_BASE_URL: twilioFake.url,
    LEASH_RESEND_BASE_URL: resend.url,
  });
  const deps = createPipeline({
    db: tdb.db,
    config,
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'silent' }),
    vendorTimeoutMs: o.timeoutMs,
  });
  await applyTestPolicy(tdb.db, catalog, policy);
  const throttle = createAuthThrottle({ maxFailures: 1000, windowMs: 60_000, trustProxyHops: 0 });
  const http = await startHttpServer(deps, {
    host: '127.0.0.1',
    port: 0,
    routes: [restRoutes(deps, { apis: vendorApis, throttle })],
    throttle,
  });
  class LeashRequestClient extends twilio.RequestClient {
    override request<T>(opts: RequestOptions<T>) {
      return super.request<T>({ ...opts, uri: opts.uri.replace('https://api.twilio.com', http.url) });
    }
  }
  const clients: Client[] = [];
  return {
    tdb,
    stripe,
    twilio: twilioFake,
    resend,
    deps,
    http,
    stripeSdk: (key, retries = 0) =>
      new Stripe(key, { host: '127.0.0.1', port: http.port, protocol: 'http', maxNetworkRetries: retries }),
    twilioSdk: (key) => twilio(AGENT_SID, key, { httpClient: new LeashRequestClient() }),
    resendSdk: (key) => new Resend(key, { baseUrl: http.url }),
    async callTool(key, name, args) {
      const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
      await createMcpServer(deps, () => key).connect(serverSide);
      const client = new Client({ name: 'faults', version: '1.0.0' });
      await client.connect(clientSide);
      clients.push(client);
      try {
        // Longer than any vendor timeout the bench uses: the answer, not the client, ends the call.
        return (await client.callTool({ name, arguments: args }, undefined, {
          timeout: 120_000,
        })) as CallToolResult;
      } finally {
        await client.close();
      }
    },
    async close() {
      await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
      await http.close();
      await deps.settler.flush();
      await Promise.all([stripe.close(), twilioFake.close(), resend.close()]);
      await tdb.close();
    },
  };
}

export type Vendor = 'stripe' | 'twilio' | 'resend';
export type Door = 'rest' | 'mcp';

/** What the caller saw, door by door, in one shape. */
export interface Seen {
  ok: boolean;
  /** REST: the HTTP status; MCP: none. */
  status: number | null;
  /** The leash code (or, passed through, the vendor's own), null on success. */
  code: string | null;
  /** The answer says the outcome is unknown (MCP: details.outcome; REST: the advice in the vendor-shaped message). */
  unknown: boolean;
  /** The wait the vendor asked for, as the caller got it (REST: Retry-After; MCP: retry_after_seconds). */
  retryAfter: string | null;
  message: string;
}

/** One call by a fresh key with arguments of its own, and the effects the vendor made for exactly those arguments. */
export interface Cell {
  key: { key: string; id: string };
  seen: Seen;
  effects(): number;
}

let serial = 0;
const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Makes one call through `door` to `vendor` (a refund, an SMS or an email) with the vendor's own SDK or over MCP. */
export async function callOnce(
  bench: FaultBench,
  key: { key: string; id: string },
  vendor: Vendor,
  door: Door,
): Promise<Cell> {
  const n = ++serial;
  let effects: () => number;
  let rest: () => Promise<Seen>;
  let mcp: () => Promise<CallToolResult>;
  if (vendor === 'stripe') {
    const p = bench.stripe.addPayment({ customer: 'cus_A', amount: 5000 });
    const args = { payment_intent: p.payment_intent, amount: 1000 };
    effects = () =>
      [...bench.stripe.refunds.values()].filter((r) => r.payment_intent === p.payment_intent).length;
    rest = async () => {
      try {
        await bench.stripeSdk(key.key).refunds.create(args);
        return { ok: true, status: 200, code: null, unknown: false, retryAfter: null, message: '' };
      } catch (e) {
        const err = e as {
          statusCode?: number;
          code?: string;
          rawType?: string;
          headers?: Record<string, string>;
        };
        return {
          ok: false,
          status: err.statusCode ?? null,
          code: err.code ?? err.rawType ?? null,
          unknown: /the outcome is unknown/.test(errText(e)),
          retryAfter: err.headers?.['retry-after'] ?? null,
          message: errText(e),
        };
      }
    };
    mcp = () => bench.callTool(key.key, 'issue_refund', args);
  } else if (vendor === 'twilio') {
    const to = `+1555${String(1_000_000 + n).slice(-7)}`;
    const body = `fault cell ${n}`;
    effects = () => [...bench.twilio.messages.values()].filter((m) => m.to === to).length;
    rest = async () => {
      try {
        await bench.twilioSdk(key.key).messages.create({ to, body });
        return { ok: true, status: 201, code: null, unknown: false, retryAfter: null, message: '' };
      } catch (e) {
        const err = e as { status?: number; code?: number; moreInfo?: string };
        const leash = /^leash:refusal\/(.+)$/.exec(err.moreInfo ?? '')?.[1];
        return {
          ok: false,
          status: err.status ?? null,
          code: leash ?? (err.code === undefined ? null : String(err.code)),
          unknown: /the outcome is unknown/.test(errText(e)),
          retryAfter: null,
          message: errText(e),
        };
      }
    };
    mcp = () => bench.callTool(key.key, 'send_sms', { to, body });
  } else {
    const subject = `fault cell ${n}`;
    effects = () => bench.resend.sent.filter((e) => e.subject === subject).length;
    rest = async () => {
      const r = await bench
        .resendSdk(key.key)
        .emails.send({ from: FROM, to: ['pat@acme.com'], subject, text: 'hello' });
      if (!r.error)
        return { ok: true, status: 200, code: null, unknown: false, retryAfter: null, message: '' };
      const tag = /\[leash (\w+)/.exec(r.error.message)?.[1];
      return {
        ok: false,
        status: r.error.statusCode,
        code: tag ?? r.error.name,
        unknown: /the outcome is unknown/.test(r.error.message),
        retryAfter: r.headers?.['retry-after'] ?? null,
        message: r.error.message,
      };
    };
    mcp = () => bench.callTool(key.key, 'send_email', { to: ['pat@acme.com'], subject, text: 'hello' });
  }
  let seen: Seen;
  if (door === 'rest') seen = await rest();
  else {
    const r = await mcp();
    const f = (r.structuredContent ?? {}) as {
      code?: string;
      message?: string;
      details?: { outcome?: string; retry_after_seconds?: number };
    };
    seen = {
      ok: !r.isError,
      status: null,
      code: r.isError ? (f.code ?? null) : null,
      unknown: f.details?.outcome === 'unknown',
      retryAfter: f.details?.retry_after_seconds === undefined ? null : String(f.details.retry_after_seconds),
      message: (r.content as { text: string }[])[0]?.text ?? '',
    };
  }
  return { key, seen, effects };
}
