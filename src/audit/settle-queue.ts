import { sql } from 'kysely';
import type { Logger } from '../config/logger.js';
import type { Db } from '../db/database.js';
import type { AuditHasher } from './audit-hash.js';
import { storablePatch, type SettlePatch } from './write.js';

export interface SettleItem {
  id: string;
  outcome: 'succeeded' | 'failed' | 'unknown';
  cost: number;
  cost_status: 'settled' | 'pending';
  patch: SettlePatch;
  /** The vendor marked the answer as a replay of an earlier request (Stripe's Idempotent-Replayed). */
  replayed?: boolean;
}

/**
 * How long a settle may wait for others to share its statement. Longer batches cost Postgres less per call (a
 * settle batch has a fixed cost of about a millisecond); the outcome shows in the audit log this much later.
 */
export const SETTLE_DELAY_MS = 50;

/**
 * Settles off the answer path: items wait at most `maxDelayMs`, then go in one statement with an
 * asynchronous commit (`leash_settle_calls`: a replay costs nothing). One batch at a time, so a busy server
 * batches more, not less.
 * A settle lost to a crash leaves its row pending, which `leash reconcile` settles.
 */
export class SettleQueue {
  private items: SettleItem[] = [];
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly hasher: AuditHasher,
    private readonly maxDelayMs = SETTLE_DELAY_MS,
    private readonly maxBatch = 256,
  ) {}

  enqueue(item: SettleItem): void {
    this.items.push({ ...item, patch: storablePatch(item.patch, this.hasher) });
    if (this.items.length >= this.maxBatch) this.schedule(0);
    else this.timer ??= this.schedule(this.maxDelayMs);
  }

  /** Resolves once everything enqueued so far is committed (or given up to reconcile). */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.drain();
    return this.chain;
  }

  private schedule(ms: number): NodeJS.Timeout {
    if (this.timer) clearTimeout(this.timer);
    const t = setTimeout(() => {
      this.timer = undefined;
      this.drain();
    }, ms);
    t.unref();
    this.timer = t;
    return t;
  }

  private drain(): void {
    if (!this.items.length) return;
    const batch = this.items;
    this.items = [];
    this.chain = this.chain.then(() => this.write(batch));
  }

  private async write(batch: SettleItem[]): Promise<void> {
    try {
      await settleBatch(this.db, batch);
    } catch {
      // One bad item must not cost the others their settle: retry one by one.
      for (const item of batch) {
        await settleBatch(this.db, [item]).catch((error: unknown) =>
          this.log.error('settle failed; reconcile will settle it', {
            audit_id: item.id,
            error: error instanceof Error ? error.name : 'unknown',
          }),
        );
      }
    }
  }
}

async function settleBatch(db: Db, items: SettleItem[]): Promise<void> {
  await sql`select leash_settle_calls(${JSON.stringify(items)}::jsonb)`.execute(db);
}
