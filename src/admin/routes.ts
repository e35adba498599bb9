import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import type { Config } from '../config/config.js';
import { listKeys, revokeKeys, type RevokeTarget } from '../keys/vault-keys.js';
import type { PipelineDeps } from '../pipeline/run-tool.js';
import { sendJson, type RouteHandler } from '../server/http.js';
import type { Alerts } from './alerts.js';
import { adminReads } from './reads.js';

const revokeBody = z
  .strictObject({
    key_id: z.string().min(1).optional(),
    agent: z.string().min(1).optional(),
    run_id: z.string().min(1).optional(),
    reason: z.string().max(500).optional(),
  })
  .refine((b) => [b.key_id, b.agent, b.run_id].filter(Boolean).length === 1, {
    message: 'give exactly one of key_id, agent or run_id',
  });

const digest = (s: string) => createHash('sha256').update(s).digest();

function tokenMatches(presented: string | undefined, expected: string): boolean {
  return presented !== undefined && timingSafeEqual(digest(presented), digest(expected));
}

/**
 * The operator API under /admin on `leash serve`, behind its own token (LEASH_ADMIN_TOKEN; never a vault key).
 * One HTTP call revokes a key, an agent or a run.
 */
export function adminRoutes(deps: PipelineDeps, config: Config, alerts?: Alerts): RouteHandler {
  const reads = adminReads(deps.db);
  return async (req: IncomingMessage, res: ServerResponse, url: URL, body: () => Promise<unknown>) => {
    if (url.pathname !== '/admin' && !url.pathname.startsWith('/admin/')) return false;
    if (!config.adminToken) {
      sendJson(res, 404, { error: 'the admin API is disabled; set LEASH_ADMIN_TOKEN to enable it' });
      return true;
    }
    const presented = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (!tokenMatches(presented, config.adminToken)) {
      sendJson(
        res,
        401,
        { error: 'admin token required' },
        { 'www-authenticate': 'Bearer realm="leash-admin"' },
      );
      return true;
    }
    const path = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';

    const revoke = async (target: RevokeTarget, reason: string | undefined) => {
      const why = reason ?? 'revoked by operator (admin API)';
      const revoked = await revokeKeys(deps.db, target, why);
      if (revoked.length)
        alerts?.notify({ type: 'key_revoked', key_ids: revoked, by: 'admin API', reason: why });
      sendJson(res, 200, { revoked });
    };

    const keyRevoke = /^\/admin\/keys\/([a-z2-7]{12})\/revoke$/.exec(path);
    if (method === 'POST' && keyRevoke?.[1]) {
      const raw = (await body().catch(() => undefined)) as { reason?: unknown } | undefined;
      await revoke({ id: keyRevoke[1] }, typeof raw?.reason === 'string' ? raw.reason : undefined);
      return true;
    }
    if (method === 'POST' && path === '/admin/revoke') {
      const parsed = revokeBody.safeParse(await body());
      if (!parsed.success) {
        sendJson(res, 400, { error: z.prettifyError(parsed.error) });
        return true;
      }
      const b = parsed.data;
      await revoke(
        b.key_id ? { id: b.key_id } : b.agent ? { agent: b.agent } : { runId: b.run_id ?? '' },
        b.reason,
      );
      return true;
    }
    if (method === 'GET' && path === '/admin/keys') {
      const q = url.searchParams;
      const keys = await listKeys(deps.db, {
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
