import {
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { sql } from 'kysely';
import { authenticate } from '../keys/authenticate.js';
import { parseVaultKey } from '../keys/vault-keys.js';
import { argsHash, type PipelineDeps } from '../pipeline/run-tool.js';
import { createMcpServer } from './mcp.js';

/** Extra routes mounted beside /mcp (the admin API). Returns false when the path is not theirs. */
export type RouteHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  body: () => Promise<unknown>,
) => Promise<boolean>;

export interface HttpOptions {
  host: string;
  port: number;
  routes?: RouteHandler[];
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

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'request body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (!size) return resolve(undefined);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown);
      } catch {
        reject(new HttpError(400, 'request body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The tool name and arguments when the body is a single tools/call request. */
function toolCall(body: unknown): { name: string; args: unknown } | undefined {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const m = body as { method?: unknown; params?: { name?: unknown; arguments?: unknown } };
  if (m.method !== 'tools/call' || typeof m.params?.name !== 'string') return undefined;
  return { name: m.params.name, args: m.params.arguments ?? {} };
}

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
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      const status = error instanceof HttpError ? error.status : 500;
      if (status === 500)
        deps.log.error('http request failed', { error: error instanceof Error ? error.name : 'unknown' });
      if (!res.headersSent)
        sendJson(res, status, { error: status === 500 ? 'internal error' : (error as Error).message });
      else res.end();
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
    let bodyPromise: Promise<unknown> | undefined;
    const body = () => (bodyPromise ??= readBody(req));
    for (const route of o.routes ?? []) if (await route(req, res, url, body)) return;
    if (url.pathname !== '/mcp') return sendJson(res, 404, { error: 'not found' });
    if (req.method !== 'POST') {
      // Stateless server: no standalone SSE stream and no sessions to delete.
      return sendJson(res, 405, { error: 'method not allowed' }, { allow: 'POST' });
    }
    const header = req.headers.authorization ?? '';
    const presented = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    if (!presented) return unauthorized(res, 'send the vault key as Authorization: Bearer lsk_...');
    if (!parseVaultKey(presented)) return unauthorized(res, 'malformed vault key');
    const parsed = await body();
    // One authentication per request, reused by tools/list and (with its arguments' hash, for the loop guard) tools/call.
    const call = toolCall(parsed);
    const hash = call ? argsHash(call.name, call.args) : null;
    const auth = await authenticate(deps.db, presented, hash).catch(() => undefined);
    if (!auth) {
      return sendJson(res, 503, {
        jsonrpc: '2.0',
        error: { code: -32603, message: 'leash cannot reach its database' },
        id: null,
      });
    }
    if (!auth.ok) return unauthorized(res, 'unknown vault key');

    const mcp = createMcpServer(deps, () => presented, { hash, result: auth });
    const transport = new StreamableHTTPServerTransport({ enableJsonResponse: true }); // no sessionIdGenerator: stateless
    res.on('close', () => {
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
