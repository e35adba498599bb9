import {
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { sql } from 'kysely';
import type { PipelineDeps } from '../pipeline/run-tool.js';
import { HttpError, parseBody, readRaw, sendJson, tooManyFailures, type RouteHandler } from '../http/kit.js';
import { checkVaultKey } from '../pipeline/presented-key.js';
import { createAuthThrottle, vaultKeyLimit, type AuthThrottle } from './auth-throttle.js';
import { createMcpServer } from './mcp.js';

export interface HttpOptions {
  host: string;
  port: number;
  routes?: RouteHandler[];
  /** Limits wrong vault keys per client address; one from the config (no alerts) when omitted. */
  throttle?: AuthThrottle;
}

export interface RunningHttp {
  url: string;
  port: number;
  server: HttpServer;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

function unauthorized(res: ServerResponse, description: string) {
  sendJson(
    res,
    401,
    { jsonrpc: '2.0', error: { code: -32001, message: `unauthorized: ${description}` }, id: null },
    { 'www-authenticate': `Bearer realm="leash", error="invalid_token", error_description="${description}"` },
  );
}

/** DNS-rebinding guard for a loopback listener: Host must be loopback, and a browser Origin must be too. */
function hostAllowed(req: IncomingMessage, loopbackOnly: boolean): boolean {
  if (!loopbackOnly) return true;
  const host = (req.headers.host ?? '').replace(/:\d+$/, '');
  if (!LOOPBACK.has(host)) return false;
  const origin = req.headers.origin;
  if (!origin) return true;
  try {
    return LOOPBACK.has(new URL(origin).hostname);
  } catch {
    return false;
  }
}

/** `leash serve`: MCP over Streamable HTTP at /mcp (stateless, JSON responses), /healthz, and extra routes. */
export async function startHttpServer(deps: PipelineDeps, o: HttpOptions): Promise<RunningHttp> {
  const loopbackOnly = LOOPBACK.has(o.host);
  const throttle =
    o.throttle ??
    createAuthThrottle({
      maxFailures: deps.config.authFailuresPerMinute,
      windowMs: 60_000,
      trustProxyHops: deps.config.trustProxyHops,
    });
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      const status = error instanceof HttpError ? error.status : 500;
      if (status === 500)
        deps.log.error('http request failed', { error: error instanceof Error ? error.name : 'unknown' });
      if (!res.headersSent) {
        const message = status === 500 ? 'internal error' : (error as Error).message;
        // An MCP client reads a JSON-RPC error; the admin API answers { error }.
        const mcp = new URL(req.url ?? '/', 'http://localhost').pathname === '/mcp';
        const rpcCode = error instanceof HttpError ? error.rpcCode : -32603;
        sendJson(
          res,
          status,
          mcp ? { jsonrpc: '2.0', error: { code: rpcCode, message }, id: null } : { error: message },
          status === 413 ? { connection: 'close' } : {},
        );
      } else res.end();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (!hostAllowed(req, loopbackOnly)) return sendJson(res, 403, { error: 'host or origin not allowed' });
    if (url.pathname === '/healthz') {
      try {
        await sql`select 1`.execute(deps.db);
        return sendJson(res, 200, { status: 'ok', sandbox: deps.sandbox });
      } catch {
        return sendJson(res, 503, { status: 'database unavailable' });
      }
    }
    let rawPromise: Promise<Buffer> | undefined;
    let bodyPromise: Promise<unknown> | undefined;
    const raw = () => (rawPromise ??= readRaw(req));
    const body = () => (bodyPromise ??= raw().then(parseBody));
    for (const route of o.routes ?? []) if (await route(req, res, url, body, raw)) return;
    if (url.pathname !== '/mcp') return sendJson(res, 404, { error: 'not found' });
    if (req.method !== 'POST') {
      // Stateless server: no standalone SSE stream and no sessions to delete.
      return sendJson(res, 405, { error: 'method not allowed' }, { allow: 'POST' });
    }
    const header = req.headers.authorization ?? '';
    const presented = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    if (!presented) return unauthorized(res, 'send the vault key as Authorization: Bearer lsk_...');
    // Transport-level answer (401, 429) from the pipeline's own key cache, so a tool call that follows costs no
    // extra query (admission re-checks in SQL). A right key is served from any address; only wrong ones are
    // throttled. With the database unreachable the MCP server answers, with the request's id.
    const check = await checkVaultKey(deps.keys, presented, vaultKeyLimit(throttle, req));
    if (check.verdict === 'throttled') return tooManyFailures(res, check.retryAfter, true);
    if (check.verdict === 'wrong')
      return unauthorized(res, check.malformed ? 'malformed vault key' : 'unknown vault key');
    const parsed = await body();

    const mcp = createMcpServer(deps, () => presented);
    const transport = new StreamableHTTPServerTransport({ enableJsonResponse: true }); // no sessionIdGenerator: stateless
    res.on('close', () => {
      // A finished response leaves no handler to abort, and closing would only build the SDK's "connection closed"
      // error (a stack trace, ~0.03 ms a request); a client gone mid-call still aborts its handler here.
      if (res.writableFinished) return;
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res, parsed);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${shownHost}:${port}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
