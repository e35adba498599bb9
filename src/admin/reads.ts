import { MAX_AUDIT_LIMIT, parseTime, queryAudit, TimeInputError, type AuditFilter } from '../audit/query.js';
import type { Db } from '../db/database.js';
import { spendReport, type SpendGrouping } from '../ledger/spend.js';
import { parseUsd, UsdInputError } from '../policy/money.js';

type Answer = { status: number; body: unknown };

const bad = (message: string): Answer => ({ status: 400, body: { error: message } });

/** The admin API's read endpoints: the same queries as `leash audit query` and `leash spend`. */
export function adminReads(db: Db) {
  return {
    async audit(q: URLSearchParams): Promise<Answer> {
      try {
        const decision = q.get('decision');
        if (decision !== null && decision !== 'allowed' && decision !== 'denied' && decision !== 'held')
          return bad('decision: expected allowed, denied or held');
        const limitText = q.get('limit');
        const limit = limitText !== null && /^\d{1,15}$/.test(limitText) ? Number(limitText) : undefined;
        if (limitText !== null && (limit === undefined || limit < 1))
          return bad(
            `limit: expected a whole number of at least 1 (at most ${MAX_AUDIT_LIMIT} rows are returned)`,
          );
        const minUsd = q.get('min_usd');
        const filter: AuditFilter = {
          agent: q.get('agent') ?? undefined,
          run: q.get('run') ?? undefined,
          keyId: q.get('key') ?? undefined,
          tool: q.get('tool') ?? undefined,
          decision: decision ?? undefined,
          since: q.get('since') ? parseTime(q.get('since') ?? '', 'since') : undefined,
          until: q.get('until') ? parseTime(q.get('until') ?? '', 'until') : undefined,
          minUsdMicros: minUsd !== null ? parseUsd(minUsd, 'min_usd') : undefined,
          limit: limit !== undefined ? Math.min(limit, MAX_AUDIT_LIMIT) : undefined,
        };
        return { status: 200, body: { rows: await queryAudit(db, filter) } };
      } catch (error) {
        if (error instanceof TimeInputError || error instanceof UsdInputError) return bad(error.message);
        throw error;
      }
    },
    async spend(q: URLSearchParams): Promise<Answer> {
      const by = q.get('by') ?? 'agent';
      if (!['agent', 'key', 'policy', 'day'].includes(by))
        return bad('by: expected agent, key, policy or day');
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
