import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Config } from '../config/config.js';
import type { RevokeTarget } from '../keys/vault-keys.js';
import type { PipelineDeps } from '../pipeline/run-tool.js';
import type { AuthThrottle } from '../server/auth-throttle.js';
import { HttpError, sendJson, type RouteHandler } from '../http/kit.js';
import { adminAuthorized } from './admin-auth.js';
import type { Alerts } from './alerts.js';
import { operatorKeys, operatorRevoke, revokeTarget } from './key-ops.js';
import { approvalRoutes } from './approvals.js';
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

/**
 * The operator API under /admin on `leash serve`, behind its own token (LEASH_ADMIN_TOKEN; never a vault key).
 * One HTTP call revokes a key, an agent or a run.
 */
export function adminRoutes(
  deps: PipelineDeps,
  config: Config,
  alerts?: Alerts,
  throttle?: AuthThrottle,
): RouteHandler {
  const reads = adminReads(deps.db);
  return async (req: IncomingMessage, res: ServerResponse, url: URL, body: () => Promise<unknown>) => {
    if (url.pathname !== '/admin' && !url.pathname.startsWith('/admin/')) return false;
    if (!config.adminToken) {
      sendJson(res, 404, { error: 'the admin API is disabled; set LEASH_ADMIN_TOKEN to enable it' });
      return true;
    }
    // The same per-address limit as vault keys (shared with /mcp when serve passes one throttle to both).
    if (!adminAuthorized(req, res, config.adminToken, throttle)) return true;
    const path = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    if (await approvalRoutes(deps.db, req, res, url, body)) return true;

    const revoke = async (target: RevokeTarget, reason: string | undefined) => {
      const why = reason ?? 'revoked by operator (admin API)';
      sendJson(res, 200, {
        revoked: await operatorRevoke(deps.db, target, { reason: why, by: 'admin API', alerts }),
      });
    };

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
      const keys = await operatorKeys(deps.db, {
        ...(q.get('agent') ? { agent: q.get('agent') ?? '' } : {}),
        ...(q.get('run') ? { runId: q.get('run') ?? '' } : {}),
        ...(q.get('active') === 'true' || q.get('active') === '1' ? { active: true } : {}),
      });
      sendJson(res, 200, { keys });
      return true;
    }
    if (method === 'GET' && path === '/admin/audit') {
      const r = await reads.audit(url.searchParams);
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
