// The baseline a user would otherwise have: a plain MCP server on the same SDK and transport as leash
// (Streamable HTTP, stateless, JSON responses, a new server per request) whose tools forward straight to the
// vendor with the same SDK clients — no policy, no budget, no audit, no database.
//
// Given a database pool it also serves a floor: `send_sms_audited` and `send_email_audited` insert one audit row
// into leash's own audit_log (every index it has), committed durably, before the same vendor call — the least any
// server that writes its audit row before the vendor must pay. No key check, budget, loop guard or outcome.
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv-provider.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type pg from 'pg';
import { z } from 'zod';
import { uuidv7 } from '../src/audit/uuid.js';
import { resendVendor } from '../tools/resend/client.js';
import { stripeVendor } from '../tools/stripe/client.js';
import { twilioVendor } from '../tools/twilio/client.js';

export interface BareServerOptions {
  twilioUrl: string;
  resendUrl: string;
  /** Enables `issue_refund` and `issue_refund_lookup` when set. */
  stripeUrl?: string;
  /** Vendor secrets the fakes accept (defaults: well-formed test values). */
  twilio?: { accountSid: string; authToken: string };
  resendApiKey?: string;
  stripeSecretKey?: string;
  /** The pinned senders (what leash's policy pins). */
  smsFrom?: string;
  emailFrom?: string;
  host?: string;
  port?: number;
  timeoutMs?: number;
  /** Enables the floor tools (`send_sms_audited`, `send_email_audited`): leash's database, as a pg pool. */
  auditPool?: pg.Pool;
}

export interface BareServer {
  url: string;
  close(): Promise<void>;
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        resolve(chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown) : undefined);
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    });
    req.on('error', reject);
  });
}

const text = (value: Record<string, unknown>): CallToolResult => ({
  content: [{ type: 'text', text: JSON.stringify(value) }],
});

/** Starts the bare server on 127.0.0.1 (port 0 by default); MCP at `${url}/mcp`. */
export async function startBareServer(o: BareServerOptions): Promise<BareServer> {
  const timeoutMs = o.timeoutMs ?? 20_000;
  const smsFrom = o.smsFrom ?? '+15550001111';
  const emailFrom = o.emailFrom ?? 'Bench <bench@acme.com>';
  const tw = o.twilio ?? { accountSid: `AC${'b3'.repeat(16)}`, authToken: 'benchTwilioToken' };
  // Clients are built once per process, as any server would.
  const twilio = await twilioVendor.createClient(
    {
      vendor: 'twilio',
      name: 'bench',
      secret: { account_sid: tw.accountSid, auth_token: tw.authToken },
      baseUrl: o.twilioUrl,
    },
    { timeoutMs },
  );
  const resend = await resendVendor.createClient(
    {
      vendor: 'resend',
      name: 'bench',
      secret: { api_key: o.resendApiKey ?? 're_bench' },
      baseUrl: o.resendUrl,
    },
    { timeoutMs },
  );
  const stripe = o.stripeUrl
    ? await stripeVendor.createClient(
        {
          vendor: 'stripe',
          name: 'bench',
          secret: { secret_key: o.stripeSecretKey ?? 'sk_test_bench' },
          baseUrl: o.stripeUrl,
        },
        { timeoutMs },
      )
    : undefined;

  const refundInput = {
    payment_intent: z.string().describe('PaymentIntent id, "pi_…"'),
    amount: z.number().int().positive().optional().describe('Minor units'),
  };

  const smsInput = { to: z.string().describe('E.164 number'), body: z.string().min(1) };
  const emailInput = {
    to: z.array(z.string()).min(1),
    subject: z.string().min(1),
    text: z.string().min(1),
  };
  const sendSms = async ({ to, body }: { to: string; body: string }) => {
    const m = await twilio.run((api) => api.messages.create({ to, body, from: smsFrom }));
    return text({ sid: m.sid, status: m.status, to: m.to, from: m.from });
  };
  const sendEmail = async ({ to, subject, text: body }: { to: string[]; subject: string; text: string }) => {
    const sent = await resend.run((sdk, signal) =>
      sdk.emails.send({ from: emailFrom, to, subject, text: body }, { signal }),
    );
    return text({ id: sent.id, to, subject });
  };
  /** The floor: one audit row, the columns leash's indexes cover filled, one durable (autocommitted) insert. */
  const audited =
    <A extends Record<string, unknown>>(
      pool: pg.Pool,
      tool: string,
      vendor: string,
      send: (args: A) => Promise<CallToolResult>,
    ) =>
    async (args: A): Promise<CallToolResult> => {
      const json = JSON.stringify(args);
      await pool.query(
        `insert into audit_log (id, key_id, agent, run_id, policy, tool, vendor, decision, outcome, usd_micros,
                                cost_status, request, args_hash)
         values ($1, 'floor', 'bench-floor', 'floor', 'bench', $2, $3, 'allowed', 'pending', 8300, 'estimated',
                 $4::jsonb, $5)`,
        [
          uuidv7(),
          tool,
          vendor,
          JSON.stringify({ size: json.length }),
          createHash('sha256').update(json).digest('hex'),
        ],
      );
      return send(args);
    };

  // One JSON Schema validator for the process, as leash keeps: the SDK would otherwise build an Ajv per request
  // (~0.3 ms of CPU each on this machine), which would slow the baseline, not leash.
  const validator = new AjvJsonSchemaValidator();

  /** A new McpServer per request (stateless), like leash. */
  function build(): McpServer {
    const server = new McpServer(
      { name: 'bare', version: '0.0.0' },
      { capabilities: { tools: {} }, jsonSchemaValidator: validator },
    );
    server.registerTool(
      'send_sms',
      { description: 'Send one text message with Twilio.', inputSchema: smsInput },
      sendSms,
    );
    server.registerTool(
      'send_email',
      { description: 'Send an email with Resend.', inputSchema: emailInput },
      sendEmail,
    );
    if (o.auditPool) {
      server.registerTool(
        'send_sms_audited',
        { description: 'Write an audit row durably, then send one text message.', inputSchema: smsInput },
        audited(o.auditPool, 'send_sms', 'twilio', sendSms),
      );
      server.registerTool(
        'send_email_audited',
        { description: 'Write an audit row durably, then send an email.', inputSchema: emailInput },
        audited(o.auditPool, 'send_email', 'resend', sendEmail),
      );
    }
    if (stripe) {
      server.registerTool(
        'issue_refund',
        { description: 'Refund a Stripe payment.', inputSchema: refundInput },
        async ({ payment_intent, amount }) => {
          const r = await stripe.run((s) =>
            s.refunds.create({ payment_intent, ...(amount ? { amount } : {}) }),
          );
          return text({ refund_id: r.id, status: r.status, amount: r.amount, currency: r.currency });
        },
      );
      // The same refund after reading the payment first, as leash's fact lookup does: isolates that extra read.
      server.registerTool(
        'issue_refund_lookup',
        { description: 'Read a Stripe payment, then refund it.', inputSchema: refundInput },
        async ({ payment_intent, amount }) => {
          const pi = await stripe.run((s) =>
            s.paymentIntents.retrieve(payment_intent, { expand: ['latest_charge'] }),
          );
          const r = await stripe.run((s) =>
            s.refunds.create({ payment_intent: pi.id, ...(amount ? { amount } : {}) }),
          );
          return text({ refund_id: r.id, status: r.status, amount: r.amount, currency: r.currency });
        },
      );
    }
    return server;
  }

  const http = createServer((req, res) => {
    const fail = (status: number, message: string) => {
      if (res.headersSent) return void res.end();
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message }, id: null }));
    };
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/mcp') return fail(404, 'not found');
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST' });
      return void res.end();
    }
    void (async () => {
      const body = await readJson(req);
      const server = build();
      const transport = new StreamableHTTPServerTransport({ enableJsonResponse: true }); // stateless
      res.on('close', () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
    })().catch((error: unknown) => fail(500, error instanceof Error ? error.message : 'internal error'));
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://${o.host ?? '127.0.0.1'}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        http.closeAllConnections();
        http.close(() => resolve());
      }),
  };
}
