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
import { checkOAuthCaller, checkVaultKey } from '../pipeline/presented-key.js';
import { createAuthThrottle, vaultKeyLimit, type AuthThrottle } from './auth-throttle.js';
import { createMcpServer } from './mcp.js';
import { createOAuthDoor, type OAuthDoor } from './oauth/door.js';
import type { IssuerOptions } from './oauth/issuer.js';

export interface HttpOptions {
  host: string;
  port: number;
  routes?: RouteHandler[];
  /** Limits wrong vault keys per client address; one from the config (no alerts) when omitted. */
  throttle?: AuthThrottle;
  /** How the OAuth door reaches the issuer (tests: a shorter JWKS cooldown); used only when LEASH_OAUTH_ISSUER is set. */
  oauth?: IssuerOptions;
}

export interface RunningHttp {
  url: string;
  port: number;
  server: HttpServer;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

/** A 401 from /mcp; with OAuth on, it also says where the authorization server is (RFC 9728 §5.1). */
function unauthorized(res: ServerResponse, description: string, oauth?: OAuthDoor) {
  const challenge = `Bearer realm="leash", error="invalid_token", error_description="${description}"`;
  sendJson(
    res,
    401,
    { jsonrpc: '2.0', error: { code: -32001, message: `unauthorized: ${description}` }, id: null },
    { 'www-authenticate': oauth ? `${challenge}, ${oauth.challenge()}` : challenge },
  );
}

/** A vault key's shape, roughly: anything else presented with OAuth on is an access token. */
const VAULT_KEY_PREFIX = /^lsk_/;

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
  // leash's public /mcp URL: the resource OAuth tokens are for (set once the server listens, when no public URL is).
  let listening = '';
  const resource = () => `${(deps.config.publicUrl ?? listening).replace(/\/+$/, '')}/mcp`;
  const oauth = deps.config.oauth
    ? createOAuthDoor(deps.config.oauth, resource, { ...o.oauth, log: deps.log })
    : undefined;
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
    if (oauth?.metadata(req, res, url)) return;
    for (const route of o.routes ?? []) if (await route(req, res, url, body, raw)) return;
    if (url.pathname !== '/mcp') return sendJson(res, 404, { error: 'not found' });
    if (req.method !== 'POST') {
      // Stateless server: no standalone SSE stream and no sessions to delete.
      return sendJson(res, 405, { error: 'method not allowed' }, { allow: 'POST' });
    }
    const header = req.headers.authorization ?? '';
    const presented = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    if (oauth && !(presented && VAULT_KEY_PREFIX.test(presented))) return serveOAuth(req, res, oauth, body);
    if (!presented) return unauthorized(res, 'send the vault key as Authorization: Bearer lsk_...');
    // Transport-level answer (401, 429) from the pipeline's own key cache, so a tool call that follows costs no
    // extra query (admission re-checks in SQL). A right key is served from any address; only wrong ones are
    // throttled. With the database unreachable the MCP server answers, with the request's id.
    const check = await checkVaultKey(deps.keys, presented, vaultKeyLimit(throttle, req));
    if (check.verdict === 'throttled') return tooManyFailures(res, check.retryAfter, true);
    if (check.verdict === 'wrong')
      return unauthorized(res, check.malformed ? 'malformed vault key' : 'unknown vault key', oauth);
    await serveMcp(req, res, presented, await body());
  }

  /**
   * An access token: the SDK's bearer middleware checks it (401/403 with resource_metadata), then its binding is
   * found; the call runs as the binding's key under a handle that lives as long as the request.
   */
  async function serveOAuth(
    req: IncomingMessage,
    res: ServerResponse,
    door: OAuthDoor,
    body: () => Promise<unknown>,
  ) {
    // A blocked address is not verified (no JWKS fetch, no introspection call to the issuer) but at a trickle.
    if (!throttle.mayLookUp(req)) return tooManyFailures(res, throttle.retryAfter(req), true);
    const verified = await door.verify(req);
    if (!verified.ok) {
      const r = verified.refusal;
      // A wrong token counts against the address like a wrong vault key (a missing one does not).
      if (r.status < 500 && req.headers.authorization) {
        const wait = throttle.reject(req, 'oauth_token', 'wrong');
        if (wait) return tooManyFailures(res, wait, true);
      }
      return sendJson(res, r.status, r.body, r.headers);
    }
    const { identity, clientId } = verified.token;
    const check = await checkOAuthCaller(deps, {
      identity: { issuer: identity.issuer, subject: identity.subject, client: clientId },
      claims: { sub: identity.subject, client_id: clientId, jti: identity.jti },
    });
    if (check.verdict === 'busy')
      return sendJson(res, 503, { error: 'too many requests in flight' }, { 'retry-after': '1' });
    if (check.verdict === 'refused') return unauthorized(res, check.code, door);
    // The handle lives as long as the request; a client that left while the token was checked has already closed.
    if (res.destroyed || req.socket.destroyed) return check.release();
    res.once('close', () => check.release());
    try {
      await serveMcp(req, res, check.handle, await body());
    } catch (error) {
      check.release();
      throw error;
    }
  }

  async function serveMcp(req: IncomingMessage, res: ServerResponse, presented: string, parsed: unknown) {
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
  listening = `http://${shownHost}:${port}`;
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
