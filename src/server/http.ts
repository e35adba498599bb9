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
import { checkVaultKey, createAuthThrottle, type AuthThrottle } from './auth-throttle.js';
import { jsonOverLimit } from './json-limits.js';
import { createMcpServer } from './mcp.js';

/** Extra routes mounted beside /mcp (the admin API). Returns false when the path is not theirs. */
export type RouteHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  body: () => Promise<unknown>,
  /** The body's bytes as sent (form-encoded bodies, say), under the same size limit; empty when none. */
  raw: () => Promise<Buffer>,
) => Promise<boolean>;

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

const MAX_BODY = 1 << 20;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

/** An over-limit body is drained (so the 413 is not lost to a reset) up to this much, then cut off. */
const MAX_DRAIN = 16 * MAX_BODY;

/** JSON too deep or too wide is refused before anything walks it (the SDK's validation, the loop guard's hash). */
function parseBody(raw: Buffer): unknown {
  if (!raw.length) return undefined;
  const text = raw.toString('utf8');
  const over = jsonOverLimit(text);
  if (over) throw new HttpError(400, over);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError(400, 'request body is not valid JSON', -32700);
  }
}

function readRaw(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const tooLarge = () => new HttpError(413, `request body is over ${MAX_BODY} bytes`);
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) return void chunks.push(c);
      // Keep reading and dropping: answering while the client still writes would reset the connection.
      chunks.length = 0;
      if (size > MAX_DRAIN) {
        req.pause();
        reject(tooLarge());
      }
    });
    req.on('end', () => {
      if (size > MAX_BODY) return reject(tooLarge());
      resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
    /** The JSON-RPC error code when the answer goes to an MCP client (default: Invalid Request). */
    readonly rpcCode = -32600,
  ) {
    super(message);
  }
}

function unauthorized(res: ServerResponse, description: string) {
  sendJson(
    res,
    401,
    { jsonrpc: '2.0', error: { code: -32001, message: `unauthorized: ${description}` }, id: null },
    { 'www-authenticate': `Bearer realm="leash", error="invalid_token", error_description="${description}"` },
  );
}

/** 429 for an address that presented too many wrong secrets; `jsonRpc` shapes the body for /mcp. */
export function tooManyFailures(res: ServerResponse, retryAfter: number, jsonRpc: boolean) {
  const message = `too many failed authentication attempts from this address; retry after ${retryAfter}s`;
  sendJson(
    res,
    429,
    jsonRpc
      ? { jsonrpc: '2.0', error: { code: -32029, message, data: { retry_after: retryAfter } }, id: null }
      : { error: message, retry_after: retryAfter },
    { 'retry-after': String(retryAfter) },
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
    const check = await checkVaultKey(throttle, deps.keys, req, presented);
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
