import { parseTime, queryAudit, TimeInputError, type AuditFilter } from '../audit/query.js';
import type { Db } from '../db/database.js';
import { spendReport, type SpendGrouping } from '../ledger/spend.js';

type Answer = { status: number; body: unknown };

const bad = (message: string): Answer => ({ status: 400, body: { error: message } });

/** The admin API's read endpoints: the same queries as `leash audit query` and `leash spend`. */
export function adminReads(db: Db) {
  return {
    async audit(q: URLSearchParams): Promise<Answer> {
      try {
        const decision = q.get('decision');
        if (decision !== null && decision !== 'allowed' && decision !== 'denied')
          return bad('decision must be allowed or denied');
        const limit = q.get('limit') !== null ? Number(q.get('limit')) : undefined;
        if (limit !== undefined && (!Number.isInteger(limit) || limit < 1))
          return bad('limit must be a positive whole number');
        const minUsd = q.get('min_usd') !== null ? Number(q.get('min_usd')) : undefined;
        if (minUsd !== undefined && !(minUsd >= 0)) return bad('min_usd must be a number of dollars');
        const filter: AuditFilter = {
          agent: q.get('agent') ?? undefined,
          run: q.get('run') ?? undefined,
          keyId: q.get('key') ?? undefined,
          tool: q.get('tool') ?? undefined,
          decision: decision ?? undefined,
          since: q.get('since') ? parseTime(q.get('since') ?? '', 'since') : undefined,
          until: q.get('until') ? parseTime(q.get('until') ?? '', 'until') : undefined,
          minUsdMicros: minUsd !== undefined ? Math.round(minUsd * 1_000_000) : undefined,
          limit: limit !== undefined ? Math.min(limit, 10_000) : undefined,
        };
        return { status: 200, body: { rows: await queryAudit(db, filter) } };
      } catch (error) {
        if (error instanceof TimeInputError) return bad(error.message);
        throw error;
      }
    },
    async spend(q: URLSearchParams): Promise<Answer> {
      const by = q.get('by') ?? 'agent';
      if (!['agent', 'key', 'policy', 'day'].includes(by)) return bad('by must be agent, key, policy or day');
      try {
        const report = await spendReport(db, {
          by: by as SpendGrouping, // checked against the list above
          since: q.get('since') ? parseTime(q.get('since') ?? '', 'since') : undefined,
          until: q.get('until') ? parseTime(q.get('until') ?? '', 'until') : undefined,
        });
        return { status: 200, body: report };
      } catch (error) {
        if (error instanceof TimeInputError) return bad(error.message);
        throw error;
      }
    },
  };
}
