// GET /admin/actions: who changed what (operator_actions), filtered as `leash audit query --operator-actions` is.
import { ACTION_KINDS } from '../audit/action-words.js';
import { MAX_ACTIONS_LIMIT, queryActions, type ActionFilter } from '../audit/operator-actions.js';
import { parseTime, TimeInputError } from '../audit/query.js';
import type { Db } from '../db/database.js';

type Answer = { status: number; body: unknown };

const bad = (message: string): Answer => ({ status: 400, body: { error: message } });
const MAX_TEXT = 300;

/** `?operator=&action=&target=&since=&until=&limit=`, newest first. */
export async function actionReads(db: Db, q: URLSearchParams): Promise<Answer> {
  try {
    for (const field of ['operator', 'target'])
      if ((q.get(field) ?? '').length > MAX_TEXT)
        return bad(`${field}: expected at most ${MAX_TEXT} characters`);
    const action = q.get('action');
    const kind = action === null ? undefined : ACTION_KINDS.find((k) => k === action);
    if (action !== null && !kind) return bad(`action: expected one of ${ACTION_KINDS.join(', ')}`);
    const limitText = q.get('limit');
    const limit = limitText !== null && /^\d{1,15}$/.test(limitText) ? Number(limitText) : undefined;
    if (limitText !== null && (limit === undefined || limit < 1))
      return bad(
        `limit: expected a whole number of at least 1 (at most ${MAX_ACTIONS_LIMIT} rows are returned)`,
      );
    const filter: ActionFilter = {
      actor: q.get('operator') || undefined,
      action: kind,
      target: q.get('target') || undefined,
      since: q.get('since') ? parseTime(q.get('since') ?? '', 'since') : undefined,
      until: q.get('until') ? parseTime(q.get('until') ?? '', 'until') : undefined,
      limit: limit !== undefined ? Math.min(limit, MAX_ACTIONS_LIMIT) : undefined,
    };
    return { status: 200, body: { actions: await queryActions(db, filter) } };
  } catch (error) {
    if (error instanceof TimeInputError) return bad(error.message);
    throw error;
  }
}
