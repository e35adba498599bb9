// `leash audit export`: every column of the audit rows whose ids fall before a time (the partitions prune may drop),
// streamed in keyset pages by primary key (each page one short query on one or two partitions; memory stays one page
// whatever the size), as JSON Lines or CSV. What an export covered is recorded as an operator action (audit.export):
// prune drops a partition only when an export covered it after its last row had settled.
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { recordAction, type Actor } from './operator-actions.js';
import { uuidFloor } from './partitions.js';

export type ExportFormat = 'jsonl' | 'csv';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['jsonl', 'csv'];

export interface ExportOptions {
  /** Rows whose id was minted before this time. */
  before: Date;
  /** And at or after this one (default: from the first row). */
  since?: Date | undefined;
  format: ExportFormat;
  /** Rows per page (default 2,000). */
  pageSize?: number | undefined;
}

/** What an export wrote: recorded in operator_actions' detail, and what prune checks against. */
export interface ExportSummary {
  before: string;
  since: string | null;
  /** The id range covered: [from, to); from null = from the first row. */
  from: string | null;
  to: string;
  format: ExportFormat;
  rows: number;
  bytes: number;
  sha256: string;
  /** The lowest id among rows written while not yet final (in flight, outcome unknown, price pending, held). */
  first_unsettled: string | null;
}

// A row that may still change: its export is not the last word on it.
const UNSETTLED = sql<boolean>`(a.decision = 'allowed' and (a.outcome in ('pending', 'unknown')
    or a.cost_status = 'pending'))
  or (a.decision = 'held' and coalesce(a.metadata->'approval'->>'status', 'pending') in ('pending', 'approved'))`;

/** audit_log's columns in table order (every one, so an export survives a column added later). */
async function auditColumns(db: Db): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`
    select attname as name from pg_attribute
      where attrelid = 'audit_log'::regclass and attnum > 0 and not attisdropped order by attnum`.execute(db);
  return rows.map((r) => r.name);
}

/** RFC 4180: quoted when it holds a quote, comma or line break. Values are kept exact (this is an archive). */
function csvField(v: string | null): string {
  if (v === null) return '';
  return /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** How far behind now an export stops at most: ids a replica whose clock lags this much may still write. */
export const EXPORT_SETTLE_MS = 5 * 60_000;

/**
 * Streams the rows to `write` (awaited between pages, so a slow reader slows the export instead of growing memory)
 * and returns what was written. Times are ISO 8601 in UTC; jsonb columns are JSON (in CSV, their JSON text).
 */
export async function exportAudit(
  db: Db,
  o: ExportOptions,
  write: (chunk: string) => Promise<void>,
): Promise<ExportSummary> {
  // An export covers only what was already written: never past now (less a margin for a replica whose clock is
  // behind, whose ids are that much earlier), whatever --before says, so a later prune cannot take it as covering
  // rows written after it ran.
  const to = uuidFloor(new Date(Math.min(o.before.getTime(), Date.now() - EXPORT_SETTLE_MS)));
  const from = o.since ? uuidFloor(o.since) : null;
  const pageSize = Math.min(Math.max(Math.trunc(o.pageSize ?? 2_000), 1), 10_000);
  const columns = o.format === 'csv' ? await auditColumns(db) : [];
  const hash = createHash('sha256');
  let rows = 0;
  let bytes = 0;
  let firstUnsettled: string | null = null;
  const emit = async (text: string) => {
    hash.update(text, 'utf8');
    bytes += Buffer.byteLength(text, 'utf8');
    await write(text);
  };
  if (o.format === 'csv') await emit(columns.join(',') + '\r\n');
  let after: string | null = null;
  for (;;) {
    const page = await db.transaction().execute(async (trx) => {
      // JSON's times in UTC whatever the session's zone; local to this transaction (safe behind a pooler).
      await sql`select set_config('timezone', 'UTC', true)`.execute(trx);
      const { rows: got } = await sql<{ id: string; j: string; f: (string | null)[] | null; u: boolean }>`
        select a.id::text as id, to_jsonb(a)::text as j, ${UNSETTLED} as u,
               ${o.format === 'csv' ? sql`(select array_agg(to_jsonb(a) ->> c order by n) from unnest(${columns}::text[]) with ordinality x(c, n))` : sql`null::text[]`} as f
          from audit_log a
          where a.id < ${to}::uuid
            ${from ? sql`and a.id >= ${from}::uuid` : sql``}
            ${after ? sql`and a.id > ${after}::uuid` : sql``}
          order by a.id
          limit ${pageSize}`.execute(trx);
      return got;
    });
    if (!page.length) break;
    let text = '';
    for (const r of page) {
      text += o.format === 'csv' ? (r.f ?? []).map(csvField).join(',') + '\r\n' : r.j + '\n';
      if (r.u && firstUnsettled === null) firstUnsettled = r.id;
    }
    await emit(text);
    rows += page.length;
    after = page.at(-1)?.id ?? null;
    if (page.length < pageSize) break;
  }
  return {
    before: o.before.toISOString(),
    since: o.since ? o.since.toISOString() : null,
    from,
    to,
    format: o.format,
    rows,
    bytes,
    sha256: hash.digest('hex'),
    first_unsettled: firstUnsettled,
  };
}

/** Records a finished export (after its last byte was written), so prune can find it. */
export async function recordExport(db: Db, actor: Actor, summary: ExportSummary, out: string): Promise<void> {
  await recordAction(db, actor, 'audit.export', `audit:before:${summary.before}`, { ...summary, out });
}
