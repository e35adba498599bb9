import { errorName, type Logger } from '../config/logger.js';
import type { Db } from '../db/database.js';
import { linkUrl, mintLinkToken } from './link.js';
import { claimUnannounced, expireDue, type ApprovalRow } from './store.js';

export interface ApprovalLoop {
  /** Look now (a call was just held): announces new requests without waiting for the next tick. */
  kick(): void;
  stop(): Promise<void>;
}

/** What the loop tells operators of (one of the alerts `leash serve` sends). */
export interface ApprovalEvent {
  type: 'approval_requested' | 'approval_expired';
  approval_id: string;
  agent: string | null;
  run_id: string | null;
  key_id: string;
  tool: string;
  usd_micros: number;
  expires_at: string;
  /** approval_requested: the one-time signed link to the confirmation page (null when links are off). */
  url?: string | null;
}

const event = (type: ApprovalEvent['type'], a: ApprovalRow, url?: string | null): ApprovalEvent => ({
  type,
  approval_id: a.id,
  agent: a.agent,
  run_id: a.run_id,
  key_id: a.key_id,
  tool: a.tool,
  usd_micros: a.usd_micros,
  expires_at: a.expires_at.toISOString(),
  ...(type === 'approval_requested' ? { url: url ?? null } : {}),
});

/**
 * `leash serve`'s approval background work: marks requests past their expiry `expired` (alert
 * `approval_expired`), and announces new requests — held by this or any other leash process — with a one-time
 * signed link (alert `approval_requested`). Replicas share it safely: each request is claimed by one.
 */
export function startApprovalLoop(o: {
  db: Db;
  log: Logger;
  notify: (e: ApprovalEvent) => void;
  /** Announce new requests (there is a webhook to tell). */
  announce: boolean;
  baseUrl: string;
  /** Signs links; without it requests are announced with the CLI command instead. */
  linkKey: Buffer | undefined;
  everyMs?: number;
}): ApprovalLoop {
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  async function tick() {
    try {
      for (const a of await expireDue(o.db)) o.notify(event('approval_expired', a));
      if (!o.announce) return;
      const tokens = new Map<string, string>();
      const claimed = await claimUnannounced(o.db, (a) => {
        if (!o.linkKey) return undefined;
        const t = mintLinkToken(o.linkKey, a.id, a.expires_at);
        tokens.set(a.id, t.token);
        return t.hash;
      });
      for (const a of claimed) {
        const token = tokens.get(a.id);
        o.notify(event('approval_requested', a, token ? linkUrl(o.baseUrl, a.id, token) : null));
      }
    } catch (error) {
      o.log.error('approval sweep failed', { error: errorName(error) });
    }
  }

  const run = () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = tick().finally(() => {
      running = undefined;
      if (again) {
        again = false;
        run();
      }
    });
  };
  const timer = setInterval(run, o.everyMs ?? 5_000);
  timer.unref();
  run();
  return {
    kick: run,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
