// Covers issue 28 item 3: audit_log partitioned by month on its UUIDv7 id — the upgrade of a populated table (every
// row, id, index, constraint, grant and trigger kept), inserts routed to their month or the default partition,
// partitions created ahead (and rows moved out of the default), `audit export` (JSON Lines and CSV, streamed, exact
// rows) and `audit prune` (whole old partitions only, refusing open rows and unexported partitions unless --force,
// recorded as an operator action).
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { sql } from 'kysely';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { exportAudit } from '../src/audit/export.js';
import {
  ensureAuditPartitions,
  listAuditPartitions,
  monthPartitionName,
  monthStart,
  uuidFloor,
} from '../src/audit/partitions.js';
import { openDatabase, type Db, type DbHandle } from '../src/db/database.js';
import { migrateTo, migrateToLatest } from '../src/db/migrate.js';
import { catalogConfig } from './support/config.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { cli } from './support/run-cli.js';

/** A UUIDv7 of the time `at` with random bits (not src/audit/uuid.ts: it never goes back in time). */
function idAt(at: Date): string {
  const h = at.getTime().toString(16).padStart(12, '0');
  const r = randomBytes(9).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-7${r.slice(0, 3)}-8${r.slice(3, 6)}-${r.slice(6, 18)}`;
}

async function insertRow(db: Db, id: string, extra: Record<string, unknown> = {}): Promise<void> {
  await db
    .insertInto('audit_log')
    .values({
      id,
      tool: 'issue_refund',
      metadata: '{}',
      budget: '[]',
      cost_micros: 0,
      reserved_micros: 0,
      sandbox: false,
      decision: 'allowed',
      outcome: 'succeeded',
      cost_status: 'settled',
      ...extra,
    })
    .execute();
}

const partitionOf = async (db: Db, id: string) =>
  (
    await sql<{
      p: string;
    }>`select tableoid::regclass::text as p from audit_log where id = ${id}::uuid`.execute(db)
  ).rows[0]?.p;

describe('the upgrade of a populated audit_log', () => {
  const name = `leash_t_${randomBytes(6).toString('hex')}`;
  const role = `leash_t_reader_${randomBytes(4).toString('hex')}`;
  let handle: DbHandle;
  let admin: pg.Client;

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: inject('adminUrl') });
    await admin.connect();
    await admin.query(`create database ${name}`);
    await admin.query(`create role ${role} nologin`);
    const url = new URL(inject('adminUrl'));
    url.pathname = `/${name}`;
    handle = await openDatabase(catalogConfig({}), { url: url.toString(), migrate: false, poolMax: 2 });
  });
  afterAll(async () => {
    await handle?.close();
    await admin?.query(`drop database if exists ${name} with (force)`);
    await admin?.query(`drop role if exists ${role}`);
    await admin?.end();
  });

  it('keeps every row, id, index, constraint, grant and trigger, and routes the rows by id', async () => {
    const db = handle.db;
    await migrateTo(db, '2026-12-06-0019-tripwires');
    // 6,000 rows over the last four months, an id that is no UUIDv7, and one from a clock far ahead.
    await sql`
      insert into audit_log (id, ts, key_id, agent, run_id, tool, decision, reason, outcome, cost_micros, cost_status,
                             usd_micros, request, metadata)
      select (lpad(to_hex(ms), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
             to_timestamp(ms / 1000.0), 'k' || (g % 7), 'agent-' || (g % 11), 'run-' || (g / 50), 'send_sms',
             case when g % 10 = 0 then 'denied' else 'allowed' end, case when g % 10 = 0 then 'budget_exceeded' end,
             case when g % 10 = 0 then 'none' else 'succeeded' end, g, 'settled', g,
             jsonb_build_object('to', '+1555' || g), jsonb_build_object('n', g)
        from (select g, (extract(epoch from now() - interval '120 days') * 1000)::bigint + g::bigint * 1728000 as ms,
                     md5(g::text) as h
                from generate_series(1, 6000) g) x`.execute(db);
    const random = '5f0e7d1c-1b2a-4c3d-9e8f-0123456789ab';
    const ahead = idAt(monthStart(new Date(), 7));
    await insertRow(db, random);
    await insertRow(db, ahead);
    await sql.raw(`grant select on audit_log to ${role}`).execute(db);
    await sql`create table audit_inserts (id uuid)`.execute(db);
    await sql`create function audit_inserted() returns trigger language plpgsql as $$
                begin insert into audit_inserts values (new.id); return null; end $$`.execute(db);
    await sql`create trigger audit_inserted after insert on audit_log for each row execute function audit_inserted()`.execute(
      db,
    );

    const snapshot = async () =>
      (
        await sql<{ n: number; digest: string; ids: string }>`
          select count(*)::int as n, md5(string_agg(a::text, '|' order by id)) as digest,
                 md5(string_agg(id::text, ',' order by id)) as ids from audit_log a`.execute(db)
      ).rows[0];
    const indexes = async () =>
      (
        await sql<{ name: string; def: string }>`
          select c.relname as name, regexp_replace(pg_get_indexdef(i.indexrelid), ' ON (ONLY )?public.audit_log', ' ON audit_log') as def
            from pg_index i join pg_class c on c.oid = i.indexrelid
            where i.indrelid = 'audit_log'::regclass order by 1`.execute(db)
      ).rows;
    const constraints = async () =>
      (
        await sql<{ name: string; def: string }>`
          select conname as name, pg_get_constraintdef(oid) as def from pg_constraint
            where conrelid = 'audit_log'::regclass and contype <> 'n' order by 1`.execute(db)
      ).rows;
    const before = { rows: await snapshot(), indexes: await indexes(), constraints: await constraints() };
    expect(before.rows?.n).toBe(6002);

    await migrateToLatest(db);

    const kind = await sql<{
      k: string;
    }>`select relkind::text as k from pg_class where oid = 'audit_log'::regclass`.execute(db);
    expect(kind.rows[0]?.k).toBe('p');
    expect(await snapshot()).toEqual(before.rows);
    expect(await indexes()).toEqual(before.indexes);
    expect(await constraints()).toEqual(before.constraints);
    const granted = await sql<{
      ok: boolean;
    }>`select has_table_privilege(${role}, 'audit_log', 'select') as ok`.execute(db);
    expect(granted.rows[0]?.ok).toBe(true);

    // The old rows are the legacy partition; the odd ids went to the default one (or the month they name, once made).
    const parts = await listAuditPartitions(db);
    const legacy = parts.find((p) => p.name === 'audit_log_legacy');
    expect(legacy?.from).toBeUndefined();
    expect(legacy?.to).toBe(uuidFloor(monthStart(new Date(), 1)));
    expect(parts.map((p) => p.name)).toEqual([
      'audit_log_legacy',
      monthPartitionName(monthStart(new Date(), 1)),
      monthPartitionName(monthStart(new Date(), 2)),
      monthPartitionName(monthStart(new Date(), 3)),
      'audit_log_default',
    ]);
    const counts = await sql<{ p: string; n: number }>`
      select tableoid::regclass::text as p, count(*)::int as n from audit_log group by 1 order by 1`.execute(
      db,
    );
    expect(counts.rows).toEqual([
      { p: 'audit_log_default', n: 2 },
      { p: 'audit_log_legacy', n: 6000 },
    ]);
    expect(await partitionOf(db, random)).toBe('audit_log_default');
    // Each partition's indexes are named after the table's, so a plan says which one served.
    const named = await sql<{ name: string }>`
      select c.relname as name from pg_index x join pg_class c on c.oid = x.indexrelid
        where x.indrelid = 'audit_log_legacy'::regclass order by 1`.execute(db);
    expect(named.rows.map((r) => r.name)).toEqual(before.indexes.map((i) => `${i.name}_legacy`).sort());

    // The trigger fires for new rows, once, wherever they land; a settle by id touches one partition.
    const next = idAt(monthStart(new Date(), 1));
    await insertRow(db, next, { outcome: 'pending', cost_status: 'estimated' });
    expect(await partitionOf(db, next)).toBe(monthPartitionName(monthStart(new Date(), 1)));
    const fired = await sql<{
      n: number;
    }>`select count(*)::int as n from audit_inserts where id = ${next}::uuid`.execute(db);
    expect(fired.rows[0]?.n).toBe(1);
    const plan = await sql<{ 'QUERY PLAN': string }>`
      explain update audit_log set outcome = 'succeeded' where id = ${next}::uuid`.execute(db);
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).toContain(monthPartitionName(monthStart(new Date(), 1)));
    expect(text).not.toContain('audit_log_legacy');
    expect(text).not.toContain('audit_log_default');
  });
});

describe('partitions on a new database', () => {
  // Each test has a database of its own (partitions made or dropped, exports and prunes recorded stay with it).
  let tdb: TestDatabase;
  let env: Record<string, string>;
  let dir: string;
  beforeEach(async () => {
    tdb = await freshDatabase(4);
    dir = await mkdtemp(join(tmpdir(), 'leash-partitions-'));
    env = { DATABASE_URL: tdb.url, LEASH_HOME: dir, LEASH_LOG: 'silent' };
  });
  afterEach(async () => {
    await tdb?.close();
  });

  it('has this month and two ahead, and a default partition that takes any other id', async () => {
    const now = new Date();
    const parts = await listAuditPartitions(tdb.db);
    expect(parts.map((p) => p.name)).toEqual([
      monthPartitionName(monthStart(now)),
      monthPartitionName(monthStart(now, 1)),
      monthPartitionName(monthStart(now, 2)),
      'audit_log_default',
    ]);
    const thisMonth = idAt(now);
    const lastMsOfMonth = idAt(new Date(monthStart(now, 1).getTime() - 1));
    const firstOfNext = idAt(monthStart(now, 1));
    const old = idAt(new Date(Date.UTC(2025, 0, 15)));
    for (const id of [thisMonth, lastMsOfMonth, firstOfNext, old]) await insertRow(tdb.db, id);
    expect(await partitionOf(tdb.db, thisMonth)).toBe(monthPartitionName(monthStart(now)));
    expect(await partitionOf(tdb.db, lastMsOfMonth)).toBe(monthPartitionName(monthStart(now)));
    expect(await partitionOf(tdb.db, firstOfNext)).toBe(monthPartitionName(monthStart(now, 1)));
    expect(await partitionOf(tdb.db, old)).toBe('audit_log_default');
  });

  it('creates missing months ahead, moving the rows the default partition held for them', async () => {
    const far = monthStart(new Date(), 8);
    const early = idAt(new Date(far.getTime() + 5_000));
    await insertRow(tdb.db, early);
    expect(await partitionOf(tdb.db, early)).toBe('audit_log_default');
    const made = await ensureAuditPartitions(tdb.db, { now: far, ahead: 1 });
    expect(made).toEqual([monthPartitionName(far), monthPartitionName(monthStart(far, 1))]);
    expect(await partitionOf(tdb.db, early)).toBe(monthPartitionName(far));
    // A second pass finds nothing to do.
    expect(await ensureAuditPartitions(tdb.db, { now: far, ahead: 1 })).toEqual([]);
    const opts = await sql<{ o: string[] | null }>`
      select reloptions as o from pg_class where relname = ${monthPartitionName(far)}`.execute(tdb.db);
    expect(opts.rows[0]?.o).toEqual(['fillfactor=85']);
  });

  describe('export and prune', () => {
    // Three past months with partitions of their own: 2024-01, 2024-02, 2024-03, five rows each, and in January a
    // call that was held for an approval since denied (settled: an export is the last word on it). Made afresh in
    // each test's own database.
    const jan = new Date(Date.UTC(2024, 0, 1));
    let rows: { jan: string[]; feb: string[]; mar: string[] };
    beforeEach(async () => {
      rows = { jan: [], feb: [], mar: [] };
      await ensureAuditPartitions(tdb.db, { now: jan, ahead: 2 });
      for (const [i, m] of (['jan', 'feb', 'mar'] as const).entries())
        for (let d = 1; d <= 5; d++) {
          const id = idAt(new Date(Date.UTC(2024, i, d * 5, 12)));
          rows[m].push(id);
          await insertRow(tdb.db, id, {
            ts: new Date(Date.UTC(2024, i, d * 5, 12)),
            agent: d === 3 ? 'carol, "the closer"\nline two' : `agent-${d}`,
            cost_micros: d * 1000,
            request: { to: `+1555000${d}` },
          });
        }
      const denied = idAt(new Date(Date.UTC(2024, 0, 20)));
      await insertRow(tdb.db, denied, {
        decision: 'held',
        outcome: 'none',
        cost_status: 'none',
        metadata: '{"approval": {"status": "denied"}}',
      });
      await sql`insert into approvals (id, key_id, tool, args_hash, expires_at, held_audit_id, status)
                values (${idAt(new Date())}::uuid, 'k1', 'issue_refund', 'h', now() + interval '1 hour',
                        ${denied}::uuid, 'denied')`.execute(tdb.db);
      rows.jan.push(denied);
      rows.jan.sort();
      rows.feb.sort();
      rows.mar.sort();
    });

    /** Exports (and so records an export of) January and February, settled, as `audit export --before` does. */
    const exportJanFeb = async () => {
      const r = await cli(
        ['audit', 'export', '--before', '2024-03-01', '--out', join(dir, 'jan-feb.jsonl')],
        env,
      );
      expect(r.stderr).toContain('exported 11 rows');
      expect(r.code).toBe(0);
    };

    it('refuses while a partition holds an unknown outcome or an open approval, naming them', async () => {
      const unknown = rows.feb[1] ?? '';
      await sql`update audit_log set outcome = 'unknown' where id = ${unknown}::uuid`.execute(tdb.db);
      await sql`insert into audit_unsettled (id, ts) values (${unknown}::uuid, now())`.execute(tdb.db);
      const held = idAt(new Date(Date.UTC(2024, 0, 20)));
      await insertRow(tdb.db, held, { decision: 'held', outcome: 'none', cost_status: 'none' });
      const approval = idAt(new Date());
      await sql`insert into approvals (id, key_id, tool, args_hash, expires_at, held_audit_id)
                values (${approval}::uuid, 'k1', 'issue_refund', 'h', now() + interval '1 hour', ${held}::uuid)`.execute(
        tdb.db,
      );
      const r = await cli(['audit', 'prune', '--before', '2024-03-01', '--force', '--yes'], env);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${unknown}  outcome unknown  (audit_log_y2024m02)`);
      expect(r.stderr).toContain(`${held}  approval pending  (audit_log_y2024m01)`);
      expect((await listAuditPartitions(tdb.db)).map((p) => p.name)).toContain('audit_log_y2024m02');
      // An export made now holds those rows as they are, not as they will end: it does not let their months go.
      expect(
        (await cli(['audit', 'export', '--before', '2024-03-01', '--out', join(dir, 'open.jsonl')], env))
          .code,
      ).toBe(0);
      await sql`update audit_log set outcome = 'succeeded' where id = ${unknown}::uuid`.execute(tdb.db);
      await sql`delete from audit_unsettled where id = ${unknown}::uuid`.execute(tdb.db);
      await sql`update approvals set status = 'denied' where id = ${approval}::uuid`.execute(tdb.db);
      await sql`update audit_log set metadata = '{"approval": {"status": "denied"}}' where id = ${held}::uuid`.execute(
        tdb.db,
      );
      const stale = await cli(['audit', 'prune', '--before', '2024-03-01', '--yes'], env);
      expect(stale.code).toBe(1);
      expect(stale.stderr).toContain('no recorded export covers audit_log_y2024m01, audit_log_y2024m02');
    });

    it('streams every column of exactly the rows before the date, as JSON Lines and as CSV', async () => {
      const out = join(dir, 'jan-feb.jsonl');
      const r = await cli(['audit', 'export', '--before', '2024-03-01', '--out', out, '--by', 'alice'], env);
      expect(r.stderr).toContain('exported 11 rows');
      expect(r.code).toBe(0);
      const lines = (await readFile(out, 'utf8')).trimEnd().split('\n');
      const want = await sql<{ j: Record<string, unknown> }>`
        select to_jsonb(a) as j from audit_log a where id < ${uuidFloor(new Date('2024-03-01'))}::uuid order by id`.execute(
        tdb.db,
      );
      expect(want.rows).toHaveLength(11);
      const got = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(got.map((g) => g.id)).toEqual([...rows.jan, ...rows.feb]);
      // Every column, equal to the row (times compared as instants: the file's are UTC).
      for (const [i, g] of got.entries()) {
        const w = want.rows[i]?.j ?? {};
        expect(Object.keys(g).sort()).toEqual(Object.keys(w).sort());
        for (const k of Object.keys(w))
          if (k === 'ts' || k === 'settled_at')
            expect(g[k] === null ? null : Date.parse(g[k] as string)).toEqual(
              w[k] === null ? null : Date.parse(w[k] as string),
            );
          else expect(g[k], k).toEqual(w[k]);
      }
      expect(String(got[0]?.ts)).toMatch(/\+00:00$/);

      const csv = await cli(['audit', 'export', '--before', '2024-02-01', '--format', 'csv'], env);
      expect(csv.code).toBe(0);
      const text = csv.stdout;
      const header = text.slice(0, text.indexOf('\r\n')).split(',');
      expect(header.slice(0, 3)).toEqual(['id', 'ts', 'key_id']);
      expect(header).toContain('metadata');
      expect(
        text
          .split('\r\n')
          .filter((l) => /^[0-9a-f]{8}-/.test(l))
          .map((l) => l.slice(0, 36)),
      ).toEqual(rows.jan);
      // A value with a quote, a comma and a line break is one quoted field, exact.
      expect(text).toContain('"carol, ""the closer""\nline two"');
      expect(text).toContain('"{""to"": ""+15550001""}"');

      // Both were recorded, who did it and what they covered.
      const acts = await sql<{ actor: string; detail: Record<string, unknown> }>`
        select actor, detail from operator_actions where action = 'audit.export' order by id`.execute(tdb.db);
      expect(
        acts.rows.slice(-2).map((a) => [a.actor, a.detail.rows, a.detail.format, a.detail.first_unsettled]),
      ).toEqual([
        ['alice', 11, 'jsonl', null],
        [expect.stringMatching(/^cli/), 6, 'csv', null],
      ]);
    });

    it('writes page by page, never more than a page at a time', async () => {
      const chunks: string[] = [];
      const s = await exportAudit(
        tdb.db,
        { before: new Date('2024-04-01'), format: 'jsonl', pageSize: 4 },
        (t) => {
          chunks.push(t);
          return Promise.resolve();
        },
      );
      expect(s.rows).toBe(16);
      expect(chunks.map((c) => c.split('\n').length - 1)).toEqual([4, 4, 4, 4]);
      expect(chunks.join('').split('\n')[15]).toContain(rows.mar.at(-1));
    });

    it('refuses to prune without an export of what it would drop, and drops nothing', async () => {
      await exportJanFeb();
      const r = await cli(['audit', 'prune', '--before', '2024-04-01', '--yes'], env);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('no recorded export covers audit_log_y2024m03');
      expect(r.stderr).not.toContain('audit_log_y2024m01');
      expect((await listAuditPartitions(tdb.db)).map((p) => p.name)).toContain('audit_log_y2024m01');
    });

    it('drops only whole partitions before the date once exported, and records who did it', async () => {
      await exportJanFeb();
      const r = await cli(
        ['audit', 'prune', '--before', '2024-03-15', '--yes', '--by', 'bob', '--json'],
        env,
      );
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({
        dropped: true,
        forced: false,
        partitions: [{ name: 'audit_log_y2024m01' }, { name: 'audit_log_y2024m02' }],
      });
      const names = (await listAuditPartitions(tdb.db)).map((p) => p.name);
      expect(names).not.toContain('audit_log_y2024m01');
      expect(names).not.toContain('audit_log_y2024m02');
      // March ends after the date: kept, with its rows; so is the default partition.
      expect(names).toContain('audit_log_y2024m03');
      expect(names).toContain('audit_log_default');
      const left = await sql<{ n: number }>`
        select count(*)::int as n from audit_log where id < ${uuidFloor(new Date('2024-04-01'))}::uuid
          and id >= ${uuidFloor(jan)}::uuid`.execute(tdb.db);
      expect(left.rows[0]?.n).toBe(5);
      const act = await sql<{ actor: string; detail: { forced: boolean; partitions: { name: string }[] } }>`
        select actor, detail from operator_actions where action = 'audit.prune'`.execute(tdb.db);
      expect(act.rows).toHaveLength(1);
      expect(act.rows[0]?.actor).toBe('bob');
      expect(act.rows[0]?.detail.partitions.map((p) => p.name)).toEqual([
        'audit_log_y2024m01',
        'audit_log_y2024m02',
      ]);
    });

    it('drops an unexported partition with --force, recorded as forced', async () => {
      // January and February exported and pruned; March never exported.
      await exportJanFeb();
      const pruned = await cli(['audit', 'prune', '--before', '2024-03-15', '--yes'], env);
      expect(pruned.code).toBe(0);
      expect(pruned.stdout).toContain('dropped audit_log_y2024m01, audit_log_y2024m02');
      const r = await cli(['audit', 'prune', '--before', '2024-04-01', '--force', '--yes'], env);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('dropped audit_log_y2024m03');
      const act = await sql<{ forced: boolean }>`
        select (detail->>'forced')::boolean as forced from operator_actions where action = 'audit.prune'
          order by id desc limit 1`.execute(tdb.db);
      expect(act.rows[0]?.forced).toBe(true);
      const nothing = await cli(['audit', 'prune', '--before', '2024-04-01', '--yes'], env);
      expect(nothing.stdout).toContain('nothing to prune');
    });

    it('rejects a bad or missing --before and --format with usage errors naming the flag', async () => {
      const missing = await cli(['audit', 'prune', '--yes'], env);
      expect([missing.code, missing.stderr]).toEqual([2, expect.stringContaining('--before is required')]);
      const bad = await cli(['audit', 'export', '--before', 'last tuesday'], env);
      expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining('--before: expected an ISO time')]);
      const fmt = await cli(['audit', 'export', '--before', '2024-01-01', '--format', 'xml'], env);
      expect([fmt.code, fmt.stderr]).toEqual([
        2,
        expect.stringContaining('--format must be one of jsonl, csv'),
      ]);
    });
  });
});
