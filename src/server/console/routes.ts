import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { actionReads } from '../../admin/action-reads.js';
import { ADMIN_NAME, callerOf, operatorDoors, operatorsStillActive } from '../../admin/admin-auth.js';
import type { Alerts } from '../../admin/alerts.js';
import type { Actor } from '../../audit/operator-actions.js';
import type { AuditFilter } from '../../audit/query.js';
import type { Config } from '../../config/config.js';
import type { Db } from '../../db/database.js';
import type { AuthThrottle } from '../auth-throttle.js';
import { HttpError, type RouteHandler } from '../../http/kit.js';
import {
  decideFromConsole,
  decisionRequest,
  overview,
  resumeFromConsole,
  resumeRequest,
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

/** What a session's actions record: its operator's name (or `admin`), through the console. */
const actor = (session: ConsoleSession): Actor => ({ name: session.operator, via: 'console' });
/** Whether the session was opened with the break-glass admin token rather than an operator's. */
const isAdminToken = (session: ConsoleSession) =>
  session.operatorId === null && session.operator === ADMIN_NAME;

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
  /**
   * How often this process checks that the operators with sessions here are still active (default 1 s), so a
   * removed operator's open live streams end on every replica; any other request of theirs is refused at once.
   */
  operatorCheckMs?: number | undefined;
}

const COOKIE = 'leash_console';
/** How many operator actions the console's panel shows. */
const RECENT_ACTIONS = 20;
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
 * The operator console at /console on `leash serve`: sign in with an operator token or the admin token (then an
 * HttpOnly, SameSite=Strict session cookie that knows who signed in), live audit rows over Server-Sent Events, spend
 * against caps, revoke, and resume of paused keys; approvals, revokes and resumes record the operator's name
 * (`admin` for the admin token). Off (404) unless LEASH_ADMIN_TOKEN is set or an operator is active. Every POST must
 * come from this origin and, once signed in, carry the session's CSRF token.
 */
export function consoleRoutes(o: ConsoleOptions): RouteHandler & { close(): void } {
  const sessions = o.sessions ?? createSessionStore();
  const features: ConsoleFeatures = { approvals: true, ...o.features };
  const maxStreams = o.maxStreams ?? 32;
  const hops = o.config.trustProxyHops;
  const checkMs = o.operatorCheckMs ?? 1_000;
  const doorsOn = operatorDoors(o.db, o.config.adminToken);
  let streams = 0;
  let checker: NodeJS.Timeout | undefined;
  let closed = false;
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

  // Sessions of operators removed since (on any replica) end here within `checkMs`: their open streams close.
  let checking = false;
  const checkOperators = async () => {
    const ids = sessions.operatorIds();
    if (!ids.length || checking) return; // one check at a time, however slow the database
    checking = true;
    const active = await operatorsStillActive(o.db, ids).catch(() => undefined);
    checking = false;
    if (active) sessions.endOperators(ids.filter((id) => !active.has(id)));
  };
  const watchOperators = () => {
    if (checker || closed) return;
    checker = setInterval(() => {
      if (!sessions.operatorIds().length) {
        clearInterval(checker);
        checker = undefined;
        return;
      }
      void checkOperators();
    }, checkMs);
    checker.unref();
  };

  /** The session behind this request's cookie, if it is live and its operator has not been removed. */
  async function liveSession(req: IncomingMessage): Promise<ConsoleSession | undefined> {
    const session = sessions.get(readCookie(req, COOKIE));
    if (!session?.operatorId) return session;
    const active = await operatorsStillActive(o.db, [session.operatorId]);
    if (active.has(session.operatorId)) return session;
    sessions.destroy(session.id);
    return undefined;
  }

  async function signIn(
    req: IncomingMessage,
    res: ServerResponse,
    token: string | undefined,
    urls: AssetUrls,
  ) {
    if (!sameOrigin(req, hops))
      return send(res, 403, HTML, messagePage(urls, 'Refused', 'Sign in from the console page itself.'));
    const form = await readSmallForm(req);
    // The right token signs in from any address; wrong ones count against it (429 once it is blocked).
    const found = await callerOf(o.db, form?.token, token, () => o.throttle?.mayLookUp(req) ?? true);
    const caller = found.caller;
    if (!caller) {
      const reason = found.unchecked ? 'unchecked' : 'wrong';
      const wait = form?.token ? (o.throttle?.reject(req, 'admin_token', reason) ?? 0) : 0;
      if (wait)
        return send(
          res,
          429,
          HTML,
          signInPage(urls, { error: `Too many wrong tokens from this address; try again in ${wait} s.` }),
          { 'retry-after': String(wait) },
        );
      return send(
        res,
        401,
        HTML,
        signInPage(urls, { error: 'That is not the admin token or an operator token.' }),
      );
    }
    const session = sessions.create({ operator: caller.name, operatorId: caller.operatorId });
    if (caller.operatorId) watchOperators();
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
    // Who is signed in: an operator's name, or `admin` for the admin token (`admin_token: true`).
    if (method === 'GET' && url.pathname === '/console/api/session')
      return sendJsonSafe(res, 200, {
        ok: true,
        operator: session.operator,
        admin_token: isAdminToken(session),
      });
    if (method === 'GET' && url.pathname === '/console/api/overview')
      return sendJsonSafe(
        res,
        200,
        await overview(o.db, features, undefined, { unknownAgeSeconds: o.config.unknownAlertAgeSeconds }),
      );
    if (method === 'GET' && url.pathname === '/console/api/stream') return stream(res, session, url);
    // Who changed what, newest first: /admin/actions' read and filters, the last RECENT_ACTIONS unless told.
    if (method === 'GET' && url.pathname === '/console/api/actions') {
      const q = new URLSearchParams(url.searchParams);
      if (!q.has('limit')) q.set('limit', String(RECENT_ACTIONS));
      const r = await actionReads(o.db, q);
      return sendJsonSafe(res, r.status, r.body);
    }
    if (method !== 'POST')
      return sendJsonSafe(res, 404, { error: `no console route ${method} ${url.pathname}` });
    // Every change must come from this origin and carry the session's CSRF token.
    const csrf = req.headers['x-leash-csrf'];
    if (!sameOrigin(req, hops) || !secretEquals(typeof csrf === 'string' ? csrf : undefined, session.csrf))
      return sendJsonSafe(res, 403, { error: 'cross-site request refused' });
    if (url.pathname === '/console/api/revoke') {
      const parsed = revokeRequest.safeParse(await body());
      if (!parsed.success) return sendJsonSafe(res, 400, { error: z.prettifyError(parsed.error) });
      return sendJsonSafe(res, 200, {
        revoked: await revokeFromConsole(o.db, parsed.data, o.alerts, actor(session)),
      });
    }
    if (url.pathname === '/console/api/resume') {
      const parsed = resumeRequest.safeParse(await body());
      if (!parsed.success) return sendJsonSafe(res, 400, { error: z.prettifyError(parsed.error) });
      const ended = await resumeFromConsole(o.db, parsed.data, o.alerts, actor(session));
      return sendJsonSafe(res, 200, { resumed: ended !== null, pause: ended });
    }
    const decide = /^\/console\/api\/approvals\/([^/]+)\/(approve|deny)$/.exec(url.pathname);
    if (features.approvals && decide?.[1] && decide[2]) {
      const parsed = decisionRequest.safeParse((await body()) ?? {});
      if (!parsed.success) return sendJsonSafe(res, 400, { error: z.prettifyError(parsed.error) });
      const decision = decide[2] === 'approve' ? 'approved' : 'denied';
      const by = actor(session);
      const r = await decideFromConsole(o.db, decide[1], decision, parsed.data.note, by);
      if (r.status === 200)
        o.alerts?.notify({
          type: 'operator_action',
          action: decision === 'approved' ? 'approval.approve' : 'approval.deny',
          target: `approval:${decide[1]}`,
          by: by.name,
          via: by.via,
        });
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
    if (!(await doorsOn())) {
      send(
        res,
        404,
        HTML,
        messagePage(
          undefined,
          'Console off',
          'The console is off; add an operator (leash operators add NAME) or set LEASH_ADMIN_TOKEN to turn it on.',
        ),
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
    const session = await liveSession(req);
    const path = url.pathname.replace(/\/+$/, '') || '/console';
    if (path === '/console/login' && method === 'POST') await signIn(req, res, token, urls);
    else if (path === '/console/login' && method === 'GET') redirect(res);
    else if (path === '/console/logout' && method === 'POST') await signOut(req, res, session, urls);
    else if (path === '/console' && (method === 'GET' || method === 'HEAD'))
      send(
        res,
        200,
        HTML,
        session
          ? consolePage(urls, session.csrf, { name: session.operator, adminToken: isAdminToken(session) })
          : signInPage(urls),
      );
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
  return Object.assign(handler, {
    close: () => {
      closed = true;
      clearInterval(checker);
      sessions.clear();
    },
  });
}
