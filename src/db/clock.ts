import { sql } from 'kysely';
import type { Db } from './database.js';

/** Now, by the database's clock (what "today" means for budget windows, on every replica and every CLI). */
export async function databaseNow(db: Db): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`select clock_timestamp() as now`.execute(db);
  const now = rows[0]?.now;
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new Error('the database returned no time');
  return now;
}

/** How often the offset to the database's clock is measured again (on the next read after this long). */
const RESYNC_MS = 60_000;

/**
 * The database's clock, read in this process. Budget windows (which UTC day, which hour a call is counted in) must
 * be the same on every replica, whatever each machine's own clock says: a replica whose clock lagged would keep
 * reserving in yesterday's window. The offset is measured against `clock_timestamp()` (the midpoint of one round
 * trip), at start and again on a read a minute or more after the last measurement, in the background; a
 * measurement that fails leaves the last offset (none at first: the local clock).
 */
export class DbClock {
  private offsetMs = 0;
  private measuredAt = Number.NEGATIVE_INFINITY;
  private measuring: Promise<unknown> | undefined;

  constructor(private readonly db: Db) {}

  /** Now, by the database's clock. */
  now(): Date {
    if (Date.now() - this.measuredAt >= RESYNC_MS && !this.measuring) {
      this.measuring = this.sync()
        .catch(() => undefined)
        .finally(() => (this.measuring = undefined));
    }
    return new Date(Date.now() + this.offsetMs);
  }

  /** Measures the offset now; returns it in ms (the database's clock minus this machine's). */
  async sync(): Promise<number> {
    const sent = Date.now();
    const db = await databaseNow(this.db);
    const received = Date.now();
    this.offsetMs = Math.round(db.getTime() - (sent + received) / 2);
    this.measuredAt = received;
    return this.offsetMs;
  }
}
