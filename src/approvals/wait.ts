import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { onApprovalsChanged } from './changes.js';

/** How a wait ended: the request may have changed, the time ran out, or the caller or the server went away. */
export type WaitEnd = 'changed' | 'timeout' | 'stopped';

/** One look for all waited requests while any wait (per process, not per waiter), backing off after errors. */
const POLL_MS = 500;
const MAX_POLL_MS = 5_000;
/** The most requests one look asks about (more waiters wait for the next look, or their own timeout). */
const MAX_IDS = 1_000;

/**
 * Lets `get_approval` wait for a decision instead of being polled. A decision or cancel made in this process wakes
 * its waiters at once (`approvalsChanged`); one made elsewhere (another replica, the CLI in another process, psql)
 * is seen by one shared query every 500 ms that runs only while someone waits. LISTEN/NOTIFY would need a session
 * of its own and does not pass a transaction-mode pooler; this needs neither.
 */
export class ApprovalWaits {
  private readonly waiters = new Map<string, Set<(end: WaitEnd) => void>>();
  private unsubscribe: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private pollMs = POLL_MS;
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly everyMs = POLL_MS,
  ) {
    this.pollMs = everyMs;
  }

  /**
   * Resolves when request `id` may have changed (re-read it), after `ms`, or — as `stopped` — when `signal` aborts
   * or the server closes. Never rejects.
   */
  changed(id: string, ms: number, signal?: AbortSignal): Promise<WaitEnd> {
    if (this.closed || signal?.aborted) return Promise.resolve('stopped');
    if (ms <= 0) return Promise.resolve('timeout');
    return new Promise<WaitEnd>((resolve) => {
      const end = (how: WaitEnd) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', aborted);
        const set = this.waiters.get(id);
        set?.delete(end);
        if (set && !set.size) this.waiters.delete(id);
        if (!this.waiters.size) this.idle();
        resolve(how);
      };
      const aborted = () => end('stopped');
      const timer = setTimeout(() => end('timeout'), ms);
      signal?.addEventListener('abort', aborted, { once: true });
      let set = this.waiters.get(id);
      if (!set) this.waiters.set(id, (set = new Set()));
      set.add(end);
      this.unsubscribe ??= onApprovalsChanged((ids) => {
        for (const changed of ids) this.wake(changed, 'changed');
      });
      this.schedule();
    });
  }

  /** Ends every wait (`stopped`) and takes no more: for shutdown, before the pool closes. */
  close(): void {
    this.closed = true;
    for (const id of [...this.waiters.keys()]) this.wake(id, 'stopped');
    this.idle();
  }

  private wake(id: string, how: WaitEnd): void {
    for (const end of [...(this.waiters.get(id) ?? [])]) end(how);
  }

  private idle(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private schedule(): void {
    if (this.timer || this.polling || this.closed || !this.waiters.size) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.poll();
    }, this.pollMs);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    const ids = [...this.waiters.keys()].slice(0, MAX_IDS);
    if (!ids.length) return;
    this.polling = true;
    try {
      const { rows } = await sql<{ id: string }>`select id from approvals
        where id = any(${ids}::uuid[]) and (status <> 'pending' or expires_at <= clock_timestamp())`.execute(
        this.db,
      );
      for (const r of rows) this.wake(r.id, 'changed');
      this.pollMs = this.everyMs;
    } catch {
      // The database is away: each waiter still ends by its own timeout; look again less often.
      this.pollMs = Math.min(this.pollMs * 2, MAX_POLL_MS);
    }
    this.polling = false;
    this.schedule();
  }
}
