// Covers issue 28 item 3 across a partition boundary: the live tail (watchAudit) reports new rows and their settles on
// both sides of a month boundary, and reconcile settles unknown outcomes whose rows sit in two monthly partitions.
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { monthPartitionName, monthStart } from '../src/audit/partitions.js';
import { watchAudit, type AuditEvent } from '../src/audit/watch.js';
import type { Db } from '../src/db/database.js';
import { reconcile } from '../src/pipeline/reconcile.js';
import { callOnce, POLICY, startFaultBench, type FaultBench } from './support/faults.js';
import { keyFor } from './support/governance.js';

const partitionOf = async (db: Db, id: string) =>
  (
    await sql<{
      p: string;
    }>`select tableoid::regclass::text as p from audit_log where id = ${id}::uuid`.execute(db)
  ).rows[0]?.p;

function idAt(at: Date): string {
  const h = at.getTime().toString(16).padStart(12, '0');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-7abc-8def-${String(Math.floor(Math.random() * 1e12)).padStart(12, '0')}`;
}

let bench: FaultBench;
beforeAll(async () => {
  bench = await startFaultBench({ timeoutMs: 10_000 });
}, 180_000);
afterAll(async () => {
  vi.useRealTimers();
  await bench?.close();
});

describe('the live tail across a partition boundary', () => {
  it('reports rows of this month and the next, and the settle of each', async () => {
    const db = bench.tdb.db;
    const events: AuditEvent[] = [];
    const watch = watchAudit(db, { tool: 'send_email' }, (e) => events.push(e), { intervalMs: 50 });
    await watch.ready;
    try {
      const last = idAt(new Date(monthStart(new Date(), 1).getTime() - 1));
      const first = idAt(monthStart(new Date(), 1));
      for (const id of [last, first])
        await sql`insert into audit_log (id, tool, decision, outcome, cost_status)
                    values (${id}::uuid, 'send_email', 'allowed', 'pending', 'estimated')`.execute(db);
      expect(await partitionOf(db, last)).toBe(monthPartitionName(monthStart(new Date())));
      expect(await partitionOf(db, first)).toBe(monthPartitionName(monthStart(new Date(), 1)));
      await vi.waitFor(
        () => expect(events.filter((e) => e.kind === 'row').map((e) => e.row.id)).toEqual([last, first]),
        {
          timeout: 60_000,
          interval: 50,
        },
      );
      await sql`update audit_log set outcome = 'succeeded', cost_status = 'settled'
                  where id in (${last}::uuid, ${first}::uuid)`.execute(db);
      await vi.waitFor(
        () =>
          expect(
            events
              .filter((e) => e.kind === 'settle')
              .map((e) => [e.row.id, e.row.outcome])
              .sort(),
          ).toEqual(
            [
              [first, 'succeeded'],
              [last, 'succeeded'],
            ].sort(),
          ),
        { timeout: 60_000, interval: 50 },
      );
    } finally {
      await watch.stop();
    }
  });
});

describe('reconcile across a partition boundary', () => {
  it('settles unknown outcomes in this month and the next', async () => {
    const key = await keyFor(bench.tdb.db, { policy: POLICY });
    const cells = [];
    for (const at of [undefined, new Date(monthStart(new Date(), 1).getTime() + 60_000)]) {
      // The second call is made by a clock already in next month (audit ids carry the admitting replica's clock);
      // last in this file: ids stay monotonic, so every later id of this process is next month's too (the file runs
      // in a process of its own, vitest.config.ts).
      if (at) {
        vi.useFakeTimers({ toFake: ['Date'] });
        vi.setSystemTime(at);
      }
      const acted = bench.stripe.inject({ mode: 'error_500_acted' });
      cells.push(await callOnce(bench, key, 'stripe', 'rest'));
      await acted;
    }
    vi.useRealTimers();
    await bench.deps.settler.flush();
    const rows = await sql<{ id: string; outcome: string; p: string }>`
      select id::text as id, outcome, tableoid::regclass::text as p from audit_log
        where key_id = ${key.id} order by id`.execute(bench.tdb.db);
    expect(rows.rows.map((r) => [r.outcome, r.p])).toEqual([
      ['unknown', monthPartitionName(monthStart(new Date()))],
      ['unknown', monthPartitionName(monthStart(new Date(), 1))],
    ]);
    const s = await reconcile(bench.deps, { graceSeconds: 0 });
    for (const r of rows.rows)
      expect(s.rows.find((x) => x.id === r.id)).toMatchObject({ after: 'succeeded' });
    const after = await sql<{ outcome: string }>`
      select outcome from audit_log where key_id = ${key.id} order by id`.execute(bench.tdb.db);
    expect(after.rows.map((r) => r.outcome)).toEqual(['succeeded', 'succeeded']);
    expect(cells.map((c) => c.effects())).toEqual([1, 1]);
  });
});
