import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Config } from '../config/config.js';
import type { PauseScope } from '../keys/pauses.js';
import { KeyError, type RevokeTarget } from '../keys/vault-keys.js';
import type { PipelineDeps } from '../pipeline/run-tool.js';
import type { AuthThrottle } from '../server/auth-throttle.js';
import { HttpError, sendJson, type RouteHandler } from '../http/kit.js';
import { actorOf, operatorAuthorized, operatorDoors } from './admin-auth.js';
import type { Alerts } from './alerts.js';
import {
  operatorKeys,
  operatorPause,
  operatorPauses,
  operatorResume,
  operatorRevoke,
  pauseScope,
  revokeTarget,
  withPauses,
} from './key-ops.js';
import { approvalRoutes } from './approvals.js';
import { actionReads } from './action-reads.js';
import { adminReads } from './reads.js';

const MAX_REASON = 500;

const revokeBody = z
  .strictObject({
    key_id: z.string().min(1).optional(),
    agent: z.string().min(1).optional(),
    run_id: z.string().min(1).optional(),
    reason: z.string().max(MAX_REASON, `expected at most ${MAX_REASON} characters`).optional(),
  })
  .refine((b) => [b.key_id, b.agent, b.run_id].filter(Boolean).length === 1, {
    message: 'give exactly one of key_id, agent or run_id',
  });

const pauseBody = z
  .strictObject({
    key_id: z.string().min(1).max(256).optional(),
    run_id: z.string().min(1).max(256).optional(),
    agent: z.string().min(1).max(256).optional(),
    policy: z.string().min(1).max(256).optional(),
    reason: z.string().max(MAX_REASON, `expected at most ${MAX_REASON} characters`).optional(),
  })
  .refine((b) => [b.key_id, b.run_id, b.agent, b.policy].filter(Boolean).length === 1, {
    message: 'give exactly one of key_id, run_id, agent or policy',
  });

/**
 * The operator API under /admin on `leash serve`, behind an operator's token (`leash operators add`) or the
 * break-glass LEASH_ADMIN_TOKEN (never a vault key); every change records who made it. On while the admin token is
 * set or any operator is active. One HTTP call revokes a key, an agent or a run.
 */
export function adminRoutes(
  deps: PipelineDeps,
  config: Config,
  alerts?: Alerts,
  throttle?: AuthThrottle,
): RouteHandler {
  const reads = adminReads(deps.db);
  const doorsOn = operatorDoors(deps.db, config.adminToken);
  return async (req: IncomingMessage, res: ServerResponse, url: URL, body: () => Promise<unknown>) => {
    if (url.pathname !== '/admin' && !url.pathname.startsWith('/admin/')) return false;
    if (!(await doorsOn())) {
      sendJson(res, 404, {
        error:
          'the admin API is disabled; add an operator (leash operators add NAME) or set LEASH_ADMIN_TOKEN',
      });
      return true;
    }
    // The same per-address limit as vault keys (shared with /mcp when serve passes one throttle to both).
    const caller = await operatorAuthorized(req, res, deps.db, config.adminToken, throttle);
    if (!caller) return true;
    const actor = actorOf(caller, 'admin_api');
    const path = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    if (method === 'GET' && path === '/admin/whoami') {
      sendJson(res, 200, { operator: caller.name, admin_token: caller.operatorId === null });
      return true;
    }
    if (await approvalRoutes(deps.db, req, res, url, body, actor, alerts)) return true;

    const revoke = async (target: RevokeTarget, reason: string | undefined) => {
      const why = reason ?? 'revoked by operator (admin API)';
      sendJson(res, 200, {
        revoked: await operatorRevoke(deps.db, target, { reason: why, by: actor, alerts }),
      });
    };

    // Pause or resume a scope; a bad scope is 400 naming the field, an unknown key 404.
    const pauseOrResume = async (what: 'pause' | 'resume', scope: PauseScope, reason: string | undefined) => {
      try {
        if (what === 'pause') {
          sendJson(res, 200, await operatorPause(deps.db, scope, { by: actor, reason, alerts }));
          return;
        }
        const ended = await operatorResume(deps.db, scope, { by: actor, alerts });
        sendJson(res, 200, { resumed: ended !== undefined, pause: ended ?? null });
      } catch (error) {
        if (!(error instanceof KeyError)) throw error;
        sendJson(res, /^no key /.test(error.message) ? 404 : 400, { error: error.message });
      }
    };
    const keyPause = /^\/admin\/keys\/([^/]{1,64})\/(pause|resume)$/.exec(path);
    if (method === 'POST' && keyPause?.[1] && keyPause[2]) {
      const raw = (await body().catch((error: unknown) => {
        if (error instanceof HttpError && error.status === 413) throw error;
        return undefined;
      })) as { reason?: unknown } | undefined;
      const reason = typeof raw?.reason === 'string' ? raw.reason : undefined;
      if (reason !== undefined && reason.length > MAX_REASON) {
        sendJson(res, 400, { error: `reason: expected at most ${MAX_REASON} characters` });
        return true;
      }
      await pauseOrResume(keyPause[2] as 'pause' | 'resume', { kind: 'key', id: keyPause[1] }, reason);
      return true;
    }
    if (method === 'POST' && (path === '/admin/pause' || path === '/admin/resume')) {
      const parsed = pauseBody.safeParse(await body());
      if (!parsed.success) {
        sendJson(res, 400, { error: z.prettifyError(parsed.error) });
        return true;
      }
      await pauseOrResume(
        path === '/admin/pause' ? 'pause' : 'resume',
        pauseScope(parsed.data),
        parsed.data.reason,
      );
      return true;
    }
    if (method === 'GET' && path === '/admin/pauses') {
      sendJson(res, 200, { pauses: await operatorPauses(deps.db) });
      return true;
    }

    const keyRevoke = /^\/admin\/keys\/([a-z2-7]{12})\/revoke$/.exec(path);
    if (method === 'POST' && keyRevoke?.[1]) {
      // A body that is no JSON still revokes (the kill switch should not be fussy); an over-limit one changes nothing.
      const raw = (await body().catch((error: unknown) => {
        if (error instanceof HttpError && error.status === 413) throw error;
        return undefined;
      })) as { reason?: unknown } | undefined;
      const reason = typeof raw?.reason === 'string' ? raw.reason : undefined;
      if (reason !== undefined && reason.length > MAX_REASON) {
        sendJson(res, 400, { error: `reason: expected at most ${MAX_REASON} characters` });
        return true;
      }
      await revoke({ id: keyRevoke[1] }, reason);
      return true;
    }
    if (method === 'POST' && path === '/admin/revoke') {
      const parsed = revokeBody.safeParse(await body());
      if (!parsed.success) {
        sendJson(res, 400, { error: z.prettifyError(parsed.error) });
        return true;
      }
      await revoke(revokeTarget(parsed.data), parsed.data.reason);
      return true;
    }
    if (method === 'GET' && path === '/admin/keys') {
      const q = url.searchParams;
      const keys = await withPauses(
        deps.db,
        await operatorKeys(deps.db, {
          ...(q.get('agent') ? { agent: q.get('agent') ?? '' } : {}),
          ...(q.get('run') ? { runId: q.get('run') ?? '' } : {}),
          ...(q.get('active') === 'true' || q.get('active') === '1' ? { active: true } : {}),
        }),
      );
      sendJson(res, 200, { keys });
      return true;
    }
    if (method === 'GET' && path === '/admin/audit') {
      const r = await reads.audit(url.searchParams);
      sendJson(res, r.status, r.body);
      return true;
    }
    if (method === 'GET' && path === '/admin/actions') {
      const r = await actionReads(deps.db, url.searchParams);
      sendJson(res, r.status, r.body);
      return true;
    }
    if (method === 'GET' && path === '/admin/spend') {
      const r = await reads.spend(url.searchParams);
      sendJson(res, r.status, r.body);
      return true;
    }
    sendJson(res, 404, { error: `no admin route ${method} ${path}` });
    return true;
  };
}
