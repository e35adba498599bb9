import type { Db } from '../db/database.js';
import type { AuditHasher } from './audit-hash.js';
import {
  admissionPayload,
  admitBatch,
  type AdmitRequest,
  type AdmitResult,
  type AuditDraft,
} from './write.js';

interface Waiting {
  payload: ReturnType<typeof admissionPayload>;
  resolve(r: AdmitResult): void;
  reject(e: unknown): void;
}

/**
 * Admits the calls of this process in batches: a call goes at the end of this turn of the event loop when no
 * batch is being admitted, and calls that arrive meanwhile go together in the next one (at most `maxBatch`, with
 * `maxInFlight` batches at a time). No call waits for a timer: under load batches grow, idle a batch is one call.
 * One round trip, one durable commit and one update per window row serve a whole batch, and each call is still
 * decided on its own, in order (`leash_admit_batch`). One batch in flight (measured against two on the overhead
 * bench at concurrency 16: a third of the calls went alone and Postgres CPU per call was higher) keeps batches
 * large.
 *
 * A batch that fails is retried one call at a time, so one call's failure never refuses another; a call whose own
 * admission fails rejects, and its vendor is not called. Calls a tripwire measures batch like any other: the batch's
 * statement holds their scopes' locks and measures each call against the ones before it, exactly.
 */
export class AdmissionQueue {
  private waiting: Waiting[] = [];
  private inFlight = 0;

  constructor(
    private readonly db: Db,
    private readonly hasher: AuditHasher,
    private readonly maxBatch = 64,
    private readonly maxInFlight = 1,
  ) {}

  admit(a: AdmitRequest, draft: AuditDraft): Promise<AdmitResult> {
    // Built (and sanitised) here, so a draft that cannot be stored fails this call alone.
    const payload = admissionPayload(a, draft, this.hasher);
    // A call that needs a person's approval goes alone, as before batching: its approval request is read and
    // written per call, and no transaction then holds more than one request's row.
    if (payload.approval) return admitBatch(this.db, [payload]).then(([r]) => r!);
    return new Promise<AdmitResult>((resolve, reject) => {
      this.waiting.push({ payload, resolve, reject });
      // Calls whose requests were read in this turn of the event loop all reach here before setImmediate runs,
      // so they leave together (on the overhead bench at concurrency 16 this roughly halved the calls admitted
      // alone); an idle server loses one turn of the loop, no timer.
      this.gather ??= setImmediate(() => {
        this.gather = undefined;
        this.pump();
      });
    });
  }

  private gather: NodeJS.Immediate | undefined;

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.waiting.length) {
      const batch = this.waiting.splice(0, this.maxBatch);
      this.inFlight++;
      void this.run(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async run(batch: Waiting[]): Promise<void> {
    try {
      const results = await admitBatch(
        this.db,
        batch.map((w) => w.payload),
      );
      batch.forEach((w, i) => w.resolve(results[i]!));
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      await Promise.all(
        batch.map((w) =>
          admitBatch(this.db, [w.payload]).then(
            ([r]) => w.resolve(r!),
            (e: unknown) => w.reject(e),
          ),
        ),
      );
    }
  }
}
