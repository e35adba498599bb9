import { sql } from 'kysely';
import type { Db } from '../db/database.js';

/** A row that had been counted a second time, now a replay of the row that counts its object. */
export interface CorrectedReplay {
  id: string;
  replay_of: string;
  /** What it had counted (micro-USD), now taken off its spend windows. */
  cost_micros: number;
}

/**
 * Rows the settle before replays existed (or a replica still on that version) counted twice: a succeeded row whose
 * vendor object another row of the same key owns. Each becomes a $0 replay of that row and its cost comes off its
 * spend windows, in one transaction (`leash_correct_replays`; each row once, however many run at the same time).
 * Looks at rows from `since` on, at most `limit` of them.
 */
export async function correctReplays(db: Db, o: { since: Date; limit?: number }): Promise<CorrectedReplay[]> {
  const { rows } = await sql<{
    r: CorrectedReplay[];
  }>`select leash_correct_replays(${o.since}, ${o.limit ?? 10_000}) as r`.execute(db);
  return (rows[0]?.r ?? []).map((c) => ({ ...c, cost_micros: Number(c.cost_micros) }));
}
