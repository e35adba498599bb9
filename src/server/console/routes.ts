import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Alerts } from '../../admin/alerts.js';
import type { AuditFilter } from '../../audit/query.js';
import type { Config } from '../../config/config.js';
import type { Db } from '../../db/database.js';
import type { AuthThrottle } from '../auth-throttle.js';
import { HttpError, type RouteHandler } from '../../http/kit.js';
import {
  decideFromConsole,
  decisionRequest,
  overview,
  revokeFromConsole,
  revokeRequest,
  type ConsoleFeatures,
} from './api.js';
import { loadConsoleAssets, type AssetUrls, type ConsoleAssets } from './assets.js';
import { consolePage, messagePage, signInPage } from './pages.js';
import {
  isHttps,
  readCookie,
  readSmallForm,
  secretEquals,
  send,
  sendJsonSafe,
  sameOrigin,
} from './security.js';
import { createSessionStore, type ConsoleSession, type SessionStore } from './sessions.js';
import { streamAudit } from './stream.js';

export interface ConsoleOptions {
  db: Db;
  config: Config;
  alerts?: Alerts | undefined;
  /** The server's failed-authentication limiter: wrong tokens at sign-in count with /mcp and /admin. */
  throttle?: AuthThrottle | undefined;
  sessions?: SessionStore | undefined;
  features?: Partial<ConsoleFeatures> | undefined;
  /** Live streams open at once in this process (default 32): each polls the audit log. */
  maxStreams?: number | undefined;
  /** How often a live stream polls for rows (default 100 ms). */
  streamIntervalMs?: number | undefined;
}

const COOKIE = 'leash_console';
const HTML = 'text/html; charset=utf-8';
// The assets' URLs name their content's hash (assets.ts): a browser may keep them as long as it likes.
const IMMUTABLE = 'public, max-age=31536000, immutable';

const filterText = z.string().trim().max(200).optional();
const streamFilter = z.object({
  agent: filterText,
  run: filterText,
  tool: filterText,
  decision: z.enum(['allowed', 'denied', 'held']).optional(),
});

/**
 * The operator console at /console on `leash serve`: sign in with the admin token (then an HttpOnly,
 * SameSite=Strict session cookie), live audit rows over Server-Sent Events, spend against caps, and revoke.
 * Off (404) unless LEASH_ADMIN_TOKEN is set. Every POST must come from this origin and, once signed in, carry
 * the session's CSRF token.
 */
export function consoleRoutes(o: ConsoleOptions): RouteHandler & { close(): void } {
  const sessions = o.sessions ?? createSessionStore();
  const features: ConsoleFeatures = { approvals: true, ...o.features };
  const maxStreams = o.maxStreams ?? 32;
  const hops = o.config.trustProxyHops;
  let streams = 0;
  // Read on first use (not at all while the console is off), then kept; a missing build is looked for again.
  let built: ConsoleAssets | undefined;
  function assets(): ConsoleAssets | { error: string } {
    if (built) return built;
    const loaded = loadConsoleAssets();
    if (!('error' in loaded)) built = loaded;
    return loaded;
  }

  const cookie = (req: IncomingMessage, value: string, maxAge: number) =>
    `${COOKIE}=${value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${isHttps(req, hops) ? '; Secure' : ''}`;
  const redirect = (res: ServerResponse, headers: Record<string, string> = {}) =>
    send(res, 303, 'text/plain; charset=utf-8', 'see /console', { location: '/console', ...headers });

  async function signIn(req: IncomingMessage, res: ServerResponse, token: string, urls: AssetUrls) {
    if (!sameOrigin(req, hops))
      return send(res, 403, HTML, messagePage(urls, 'Refused', 'Sign in from the console page itself.'));
    const form = await readSmallForm(req);
    // The right token signs in from any address; wrong ones count against it (429 once it is blocked).
    if (!secretEquals(form?.token, token)) {
      const wait = form?.token ? (o.throttle?.reject(req, 'admin_token', 'wrong') ?? 0) : 0;
      if (wait)
        return send(
          res,
          429,
          HTML,
          signInPage(urls, { error: `Too many wrong tokens from this address; try again in ${wait} s.` }),
          { 'retry-after': String(wait) },
        );
      return send(res, 401, HTML, signInPage(urls, { error: 'That is not the admin token.' }));
    }
    const session = sessions.create();
    redirect(res, { 'set-cookie': cookie(req, session.id, 12 * 3600) });
  }

  async function signOut(
    req: IncomingMessage,
    res: ServerResponse,
    session: ConsoleSession | undefined,
    urls: AssetUrls,
  ) {
    const form = await readSmallForm(req);
    if (!session) return redirect(res);
    if (!sameOrigin(req, hops) || !secretEquals(form?.csrf, session.csrf))
      return send(res, 403, HTML, messagePage(urls, 'Refused', 'Sign out from the console page itself.'));
    sessions.destroy(session.id);
    redirect(res, { 'set-cookie': cookie(req, '', 0) });
  }

  function stream(res: ServerResponse, session: ConsoleSession, url: URL) {
    const parsed = streamFilter.safeParse(Object.fromEntries(url.searchParams));
    if (!parsed.success) return sendJsonSafe(res, 400, { error: z.prettifyError(parsed.error) });
    if (streams >= maxStreams)
      return sendJsonSafe(res, 503, { error: 'too many live streams open; close a console tab' });
    const f = parsed.data;
    const filter: AuditFilter = {
      agent: f.agent || undefined,
      run: f.run || undefined,
      tool: f.tool || undefined,
      decision: f.decision,
    };
    streams++;
    let cancel = () => {};
    const stop = streamAudit(o.db, res, filter, {
      backlog: 200,
      intervalMs: o.streamIntervalMs ?? 100,
      heartbeatMs: 15_000,
      stillAllowed: () => sessions.get(session.id) !== undefined,
    });
    cancel = sessions.onEnd(session.id, stop);
    res.on('close', () => {
      streams--;
      cancel();
    });
  }

  async function api(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    session: ConsoleSession,
    body: () => Promise<unknown>,
  ) {
    const method = req.method ?? 'GET';
    if (method === 'GET' && url.pathname === '/console/api/session')
      return sendJsonSafe(res, 200, { ok: true });
    if (method === 'GET' && url.pathname === '/console/api/overview')
      return sendJsonSafe(
        res,
        200,
        await overview(o.db, features, undefined, { unknownAgeSeconds: o.config.unknownAlertAgeSeconds }),
      );
    if (method === 'GET' && url.pathname === '/console/api/stream') return stream(res, session, url);
    if (method !== 'POST')
      return sendJsonSafe(res, 404, { error: `no console route ${method} ${url.pathname}` });
    // Every change must come from this origin and carry the session's CSRF token.
    const csrf = req.headers['x-leash-csrf'];
    if (!sameOrigin(req, hops) || !secretEquals(typeof csrf === 'string' ? csrf : undefined, session.csrf))
      return sendJsonSafe(res, 403, { error: 'cross-site request refused' });
    if (url.pathname === '/console/api/revoke') {
      const parsed = revokeRequest.safeParse(await body());
      if (!parsed.success) return sendJsonSafe(res, 400, { error: z.prettifyError(parsed.error) });
      return sendJsonSafe(res, 200, { revoked: await revokeFromConsole(o.db, parsed.data, o.alerts) });
    }
    const decide = /^\/console\/api\/approvals\/([^/]+)\/(approve|deny)$/.exec(url.pathname);
    if (features.approvals && decide?.[1] && decide[2]) {
      const parsed = decisionRequest.safeParse((await body()) ?? {});
      if (!parsed.success) return sendJsonSafe(res, 400, { error: z.prettifyError(parsed.error) });
      const decision = decide[2] === 'approve' ? 'approved' : 'denied';
      const r = await decideFromConsole(o.db, decide[1], decision, parsed.data.note);
      return sendJsonSafe(res, r.status, r.body);
    }
    sendJsonSafe(res, 404, { error: `no console route ${method} ${url.pathname}` });
  }

  const handler = async (
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    body: () => Promise<unknown>,
  ) => {
    if (url.pathname !== '/console' && !url.pathname.startsWith('/console/')) return false;
    const token = o.config.adminToken;
    if (!token) {
      send(
        res,
        404,
        HTML,
        messagePage(undefined, 'Console off', 'The console is off; set LEASH_ADMIN_TOKEN to turn it on.'),
      );
      return true;
    }
    const web = assets();
    if ('error' in web) {
      send(res, 500, HTML, messagePage(undefined, 'Console not built', web.error));
      return true;
    }
    const { urls } = web;
    const method = req.method ?? 'GET';
    const asset = web.files.get(url.pathname);
    if (asset && (method === 'GET' || method === 'HEAD')) {
      send(res, 200, asset.type, asset.body, { 'cache-control': IMMUTABLE });
      return true;
    }
    const session = sessions.get(readCookie(req, COOKIE));
    const path = url.pathname.replace(/\/+$/, '') || '/console';
    if (path === '/console/login' && method === 'POST') await signIn(req, res, token, urls);
    else if (path === '/console/login' && method === 'GET') redirect(res);
    else if (path === '/console/logout' && method === 'POST') await signOut(req, res, session, urls);
    else if (path === '/console' && (method === 'GET' || method === 'HEAD'))
      send(res, 200, HTML, session ? consolePage(urls, session.csrf) : signInPage(urls));
    else if (path.startsWith('/console/api/')) {
      if (!session) sendJsonSafe(res, 401, { error: 'sign in at /console' });
      else
        await api(req, res, url, session, body).catch((error: unknown) => {
          if (error instanceof HttpError) return sendJsonSafe(res, error.status, { error: error.message });
          throw error;
        });
    } else send(res, 404, HTML, messagePage(urls, 'Not found', `Nothing at ${path}.`));
    return true;
  };
  return Object.assign(handler, { close: () => sessions.clear() });
}
