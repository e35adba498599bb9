// Calls whose outcome has stayed unknown too long: the vendor may have acted, their money stays reserved, and
// reconcile could not settle them (yet). Alerts and the console tell operators about them.
import { sql } from 'kysely';
import type { Db } from '../db/database.js';

export interface UnknownOutcomes {
  /** Admitted calls whose outcome has been unknown for longer than the age asked about. */
  count: number;
  /** When the oldest of them was admitted (null when there is none). */
  oldest: Date | null;
  /** Their audit ids, oldest first (at most `limit`). */
  ids: string[];
}

/**
 * Admitted calls still `unknown` that were admitted more than `olderThanSeconds` ago (read through audit_unsettled,
 * which holds exactly the unsettled rows, by its time index).
 */
export async function unknownOutcomes(
  db: Db,
  olderThanSeconds: number,
  limit = 20,
): Promise<UnknownOutcomes> {
  const { rows } = await sql<{ id: string; ts: Date; n: number }>`
    select a.id, a.ts, count(*) over ()::int as n
      from audit_unsettled u join audit_log a on a.id = u.id
      where u.ts < now() - make_interval(secs => ${olderThanSeconds}) and a.outcome = 'unknown'
        and a.decision = 'allowed'
      order by u.ts, u.id
      limit ${limit}`.execute(db);
  return { count: rows[0]?.n ?? 0, oldest: rows[0]?.ts ?? null, ids: rows.map((r) => r.id) };
}
