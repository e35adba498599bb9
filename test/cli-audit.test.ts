// Covers `leash audit query|tail` and `leash spend`: filters, time flags, formats, spend figures, index use, live tail and settles.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Insertable } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_COLUMNS, auditQuery, parseTime, TimeInputError, type AuditRow } from '../src/audit/query.js';
import { watchAudit, type AuditEvent } from '../src/audit/watch.js';
import { auditCsv, formatAuditLine } from '../src/cli/audit-format.js';
import { uuidv7 } from '../src/audit/uuid.js';
import type { Db } from '../src/db/database.js';
import type { AuditLogTable } from '../src/db/schema.js';
import { mintKey } from '../src/keys/vault-keys.js';
import { dayStart } from '../src/ledger/windows.js';
import { policyFileSchema } from '../src/policy/schema.js';
import { applyPolicy } from '../src/policies/store.js';
import { childEnv, LEASH_BIN } from './support/cli.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { cli } from './support/run-cli.js';

let tdb: TestDatabase;
let home: string;
let env: Record<string, string>;

/** Runs `leash <argv>` in-process with captured output. */
const leash = (...argv: string[]) => cli(argv, env);

type Seed = Partial<Insertable<AuditLogTable>> & { tool: string; decision: 'allowed' | 'denied' };

function auditRow(s: Seed): Insertable<AuditLogTable> {
  return {
    id: uuidv7(),
    outcome: s.decision === 'denied' ? 'none' : 'succeeded',
    reserved_micros: 0,
    cost_micros: 0,
    cost_status: 'none',
    budget: '[]',
    metadata: '{}',
    sandbox: false,
    key_id: null,
    agent: null,
    run_id: null,
    policy: null,
    policy_version: null,
    vendor: null,
    operation: null,
    account: null,
    reason: null,
    amount: null,
    currency: null,
    vendor_request_id: null,
    vendor_object_id: null,
    http_status: null,
    error: null,
    request: null,
    args_hash: null,
    latency_ms: null,
    settled_at: null,
    // As leash_admit records it: the admitted USD value.
    usd_micros:
      s.decision === 'allowed' ? Math.max(Number(s.cost_micros ?? 0), Number(s.reserved_micros ?? 0)) : 0,
    ...s,
  };
}

async function insert(db: Db, ...seeds: Seed[]): Promise<string[]> {
  const rows = seeds.map(auditRow);
  await db.insertInto('audit_log').values(rows).execute();
  return rows.map((r) => r.id);
}

const now = new Date();
const ago = (ms: number) => new Date(now.getTime() - ms);
const MIN = 60_000;
const HOUR = 3_600_000;
const CAROL = 'carol, "the closer"';
const keys = { k1: '', k2: '', k3: '' };
let ids: Record<string, string> = {};

beforeAll(async () => {
  tdb = await freshDatabase(4);
  home = await mkdtemp(join(tmpdir(), 'leash-audit-cli-'));
  env = { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' };
  await applyPolicy(
    tdb.db,
    policyFileSchema.parse({
      name: 'refunds',
      limits: { daily_usd: 500, per_key_daily_usd: 250 },
      tools: {},
    }),
  );
  await applyPolicy(tdb.db, policyFileSchema.parse({ name: 'sms', limits: { daily_usd: 20 }, tools: {} }));
  keys.k1 = (await mintKey(tdb.db, { agent: 'alice', runId: 'run-a1', policy: 'refunds' })).id;
  keys.k2 = (await mintKey(tdb.db, { agent: 'alice', runId: 'run-a2', policy: 'refunds' })).id;
  keys.k3 = (await mintKey(tdb.db, { agent: 'bob', runId: 'run-b1', policy: 'sms' })).id;
  const alice1 = { agent: 'alice', key_id: keys.k1, run_id: 'run-a1', policy: 'refunds', policy_version: 1 };
  const alice2 = { ...alice1, key_id: keys.k2, run_id: 'run-a2' };
  const bob = { agent: 'bob', key_id: keys.k3, run_id: 'run-b1', policy: 'sms', policy_version: 1 };
  const refund = { tool: 'issue_refund', vendor: 'stripe', currency: 'usd' };
  const sms = { tool: 'send_sms', vendor: 'twilio' };
  const names = [
    'old_b',
    'old_a',
    'a1_ok',
    'a1_pending',
    'a1_denied',
    'a2_100',
    'a2_99',
    'b_ok',
    'b_budget',
    'b_recipient',
    'carol',
  ];
  const rows: Seed[] = [
    { ...bob, ...sms, run_id: 'run-b0', decision: 'allowed', cost_micros: 8_300, ts: ago(50 * HOUR) },
    {
      ...alice1,
      ...refund,
      run_id: 'run-a0',
      decision: 'allowed',
      cost_micros: 7_000_000,
      ts: ago(3 * HOUR),
    },
    {
      ...alice1,
      ...refund,
      decision: 'allowed',
      cost_micros: 30_000_000,
      cost_status: 'settled',
      amount: 3000,
      vendor_object_id: 're_1',
      ts: ago(30 * MIN),
    },
    {
      ...alice1,
      ...refund,
      decision: 'allowed',
      outcome: 'pending',
      reserved_micros: 50_000_000,
      cost_status: 'estimated',
      ts: ago(25 * MIN),
    },
    { ...alice1, ...refund, decision: 'denied', reason: 'amount_over_limit', ts: ago(20 * MIN) },
    {
      ...alice2,
      ...refund,
      decision: 'allowed',
      cost_micros: 100_000_000,
      vendor_object_id: 're_2',
      ts: ago(15 * MIN),
    },
    {
      ...alice2,
      ...refund,
      decision: 'allowed',
      cost_micros: 99_999_999,
      vendor_object_id: 're_3',
      ts: ago(14 * MIN),
    },
    { ...bob, ...sms, decision: 'allowed', cost_micros: 8_300, vendor_object_id: 'SM1', ts: ago(10 * MIN) },
    { ...bob, ...sms, decision: 'denied', reason: 'budget_exceeded', ts: ago(9 * MIN) },
    { ...bob, ...sms, decision: 'denied', reason: 'recipient_not_allowed', ts: ago(8 * MIN) },
    {
      agent: CAROL,
      tool: 'send_email',
      decision: 'allowed',
      cost_micros: 1_000,
      vendor_object_id: 'em_1',
      ts: ago(5 * MIN),
    },
  ];
  const inserted = await insert(tdb.db, ...rows);
  ids = Object.fromEntries(names.map((n, i) => [n, inserted[i] ?? '']));
  // Today's windows as admission would have left them (set directly: the report reads, it does not derive).
  const today = dayStart(new Date());
  await tdb.db
    .insertInto('spend_windows')
    .values([
      {
        scope: `key:${keys.k1}`,
        kind: 'usd_day',
        window_start: today,
        spent_micros: 30_000_000,
        reserved_micros: 50_000_000,
      },
      { scope: `key:${keys.k2}`, kind: 'usd_day', window_start: today, spent_micros: 199_999_999 },
      {
        scope: 'policy:refunds',
        kind: 'usd_day',
        window_start: today,
        spent_micros: 229_999_999,
        reserved_micros: 50_000_000,
      },
      { scope: 'policy:sms', kind: 'usd_day', window_start: today, spent_micros: 8_300 },
    ])
    .execute();
});

afterAll(async () => {
  await tdb?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

async function queryIds(...flags: string[]): Promise<string[]> {
  const r = await leash('audit', 'query', '--format', 'json', ...flags);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { id: string }[]).map((row) => row.id);
}
const idsOf = (...names: string[]) => names.map((n) => ids[n]);

describe('leash audit query', () => {
  it('narrows by agent, run, key, tool and decision, newest first', async () => {
    expect(await queryIds('--agent', 'alice')).toEqual(
      idsOf('a2_99', 'a2_100', 'a1_denied', 'a1_pending', 'a1_ok', 'old_a'),
    );
    expect(await queryIds('--run', 'run-a1')).toEqual(idsOf('a1_denied', 'a1_pending', 'a1_ok'));
    expect(await queryIds('--key', keys.k2)).toEqual(idsOf('a2_99', 'a2_100'));
    expect(await queryIds('--tool', 'send_sms')).toEqual(idsOf('b_recipient', 'b_budget', 'b_ok', 'old_b'));
    expect(await queryIds('--decision', 'denied')).toEqual(idsOf('b_recipient', 'b_budget', 'a1_denied'));
    expect(await queryIds('--agent', 'bob', '--decision', 'allowed')).toEqual(idsOf('b_ok', 'old_b'));
    expect(await queryIds('--agent', CAROL)).toEqual(idsOf('carol'));
    expect(await queryIds('--limit', '2')).toEqual(idsOf('carol', 'b_recipient'));
  });

  it('treats --min-usd as dollars and matches cost or reservation at or above it', async () => {
    expect(await queryIds('--min-usd', '100')).toEqual(idsOf('a2_100'));
    expect(await queryIds('--min-usd', '99.999999')).toEqual(idsOf('a2_99', 'a2_100'));
    expect(await queryIds('--min-usd', '100.000001')).toEqual([]);
    expect(await queryIds('--min-usd', '50')).toEqual(idsOf('a2_99', 'a2_100', 'a1_pending'));
    expect(await queryIds('--min-usd', '0.0083', '--tool', 'send_sms')).toEqual(idsOf('b_ok', 'old_b'));
    const bad = await leash('audit', 'query', '--min-usd', '-3');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--min-usd');
  });

  it('accepts relative, ISO and date forms for --since and --until', async () => {
    const recent = idsOf(
      'carol',
      'b_recipient',
      'b_budget',
      'b_ok',
      'a2_99',
      'a2_100',
      'a1_denied',
      'a1_pending',
      'a1_ok',
    );
    expect(await queryIds('--since', '2h')).toEqual(recent);
    expect(await queryIds('--since', '240m')).toEqual([...recent, ids.old_a]);
    expect(await queryIds('--since', ago(2 * HOUR).toISOString())).toEqual(recent);
    expect(await queryIds('--until', '2h')).toEqual(idsOf('old_a', 'old_b'));
    expect(await queryIds('--since', '7d', '--until', '1h', '--agent', 'alice')).toEqual(idsOf('old_a'));
    const tomorrow = new Date(dayStart(new Date()).getTime() + 86_400_000).toISOString().slice(0, 10);
    expect(await queryIds('--since', tomorrow)).toEqual([]);
  });

  it('rejects a bad --since with exit code 2 and a message naming the flag and the accepted forms', async () => {
    for (const value of ['yesterday', '2026-02-31', '5 parsecs', '']) {
      const r = await leash('audit', 'query', '--since', value);
      expect(r.code, value).toBe(2);
      expect(r.stderr).toContain('--since');
      expect(r.stderr).toContain('2h');
    }
    const badUntil = await leash('audit', 'query', '--until', 'soon');
    expect([badUntil.code, badUntil.stderr.includes('--until')]).toEqual([2, true]);
    const decision = await leash('audit', 'query', '--decision', 'maybe');
    expect([decision.code, decision.stderr.includes('--decision')]).toEqual([2, true]);
  });

  it('prints CSV with a header row and quotes fields holding commas and quotes', async () => {
    const r = await leash('audit', 'query', '--format', 'csv', '--since', '2h');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\r\n');
    expect(lines[0]).toBe(AUDIT_COLUMNS.join(','));
    expect(lines).toHaveLength(10);
    const carol = lines[1] ?? '';
    expect(carol.startsWith(`${ids.carol},`)).toBe(true);
    expect(carol).toContain(',"carol, ""the closer""",');
    expect(carol).toContain(',send_email,allowed,,succeeded,1000,0,none,');
  });

  it('prints a JSON array that parses, with ISO times and money in micros', async () => {
    const r = await leash('audit', 'query', '--format', 'json', '--run', 'run-a2');
    const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
    expect(rows.map((x) => [x.cost_micros, x.vendor_object_id, x.key_id])).toEqual([
      [99_999_999, 're_3', keys.k2],
      [100_000_000, 're_2', keys.k2],
    ]);
    expect(new Date(String(rows[0]?.ts)).toISOString()).toBe(rows[0]?.ts);
  });

  it('prints a table by default and (none) with exit 0 when nothing matches', async () => {
    const r = await leash('audit', 'query', '--run', 'run-a1');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(
      /^TS\s+AGENT\s+RUN_ID\s+TOOL\s+DECISION\s+OUTCOME\s+COST\s+RESERVED\s+VENDOR_OBJECT_ID\s+ID$/,
    );
    expect(lines[1]).toContain('denied:amount_over_limit');
    expect(lines[2]).toMatch(/\$0\.00\s+\$50\.00/);
    expect(lines[3]).toMatch(/\$30\.00\s+-\s+re_1/);
    const none = await leash('audit', 'query', '--agent', 'nobody');
    expect([none.code, none.stdout]).toEqual([0, '(none)\n']);
  });
});

describe('leash spend', () => {
  interface Report {
    since: string;
    rows: {
      group: string | null;
      agent: string | null;
      held_micros: number;
      requests: number;
      denied: number;
      cap_micros: number | null;
      remaining_micros: number | null;
    }[];
  }
  const spend = async (...flags: string[]) => {
    const r = await leash('spend', '--json', ...flags);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Report;
  };
  const figures = (rep: Report) =>
    rep.rows.map((r) => [r.group, r.held_micros, r.requests, r.denied, r.cap_micros, r.remaining_micros]);

  it('sums spend, requests and denials per agent, starting today (UTC) by default', async () => {
    const rep = await spend('--by', 'agent', '--since', '1h');
    expect(figures(rep)).toEqual([
      ['alice', 279_999_999, 5, 1, null, null],
      ['bob', 8_300, 3, 2, null, null],
      [CAROL, 1_000, 1, 0, null, null],
    ]);
    expect((await spend()).since).toBe(dayStart(new Date()).toISOString());
  });

  it('adds today’s per-key cap and what is left, following the key’s policy', async () => {
    const rep = await spend('--by', 'key', '--since', '1h');
    expect(figures(rep)).toEqual([
      [keys.k2, 199_999_999, 2, 0, 250_000_000, 50_000_001],
      [keys.k1, 80_000_000, 3, 1, 250_000_000, 170_000_000],
      [keys.k3, 8_300, 3, 2, null, null],
      [null, 1_000, 1, 0, null, null],
    ]);
    expect(rep.rows[0]?.agent).toBe('alice');
  });

  it('adds today’s policy cap and what is left across all of its keys', async () => {
    const rep = await spend('--by', 'policy', '--since', '1h');
    expect(figures(rep)).toEqual([
      ['refunds', 279_999_999, 5, 1, 500_000_000, 220_000_001],
      ['sms', 8_300, 3, 2, 20_000_000, 19_991_700],
      [null, 1_000, 1, 0, null, null],
    ]);
    const table = await leash('spend', '--by', 'policy', '--since', '1h');
    // Money as cost and what pending calls have reserved ("held" is for calls waiting for a person).
    expect(table.stdout).toMatch(/refunds\s+\$229\.999999\s+\$50\.00\s+5\s+1\s+\$500\.00\s+\$220\.000001/);
    expect(table.stdout).toMatch(/POLICY\s+COST\s+RESERVED\s+REQUESTS\s+DENIED\s+CAP\s+REMAINING/);
  });

  it('groups by UTC day, oldest first, and rejects an unknown grouping', async () => {
    const rep = await spend('--by', 'day', '--since', '3d');
    expect(rep.rows.reduce((n, r) => n + r.requests, 0)).toBe(11);
    const days = rep.rows.map((r) => r.group ?? '');
    expect(days).toEqual([...days].sort());
    expect(days).toContain(
      ago(50 * HOUR)
        .toISOString()
        .slice(0, 10),
    );
    const bad = await leash('spend', '--by', 'week');
    expect([bad.code, bad.stderr.includes('--by')]).toEqual([2, true]);
  });
});

describe('leash audit tail', () => {
  // The rows these tests write go again after each: every test of this file sees the seeded rows, in any order.
  afterEach(async () => {
    await tdb.db.deleteFrom('audit_log').where('id', 'not in', Object.values(ids)).execute();
  });

  it('prints the last N matching rows oldest first, as lines or NDJSON', async () => {
    const json = await leash('audit', 'tail', '-n', '3', '--json');
    expect(json.code).toBe(0);
    const rows = json.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string });
    expect(rows.map((x) => x.id)).toEqual(idsOf('b_budget', 'b_recipient', 'carol'));

    const denied = await leash('audit', 'tail', '--denied', '--agent', 'bob');
    const [header, ...lines] = denied.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^TS\s+AGENT\s+RUN_ID\s+TOOL\s+DECISION\s+OUTCOME\s+COST\s+VENDOR_OBJECT_ID$/);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/Z {2}bob\s+run-b1\s+send_sms\s+denied:budget_exceeded\s+none\s+-\s+-$/);
    const ok = await leash(
      'audit',
      'tail',
      '--tool',
      'send_sms',
      '-n',
      '1',
      '--agent',
      'bob',
      '--run',
      'run-b1',
    );
    expect(ok.stdout).toContain('denied:recipient_not_allowed');
    const sms = await leash('audit', 'tail', '--run', 'run-b1', '-n', '3');
    expect(sms.stdout).toMatch(/allowed\s+succeeded\s+\$0\.0083\s+SM1\n/);
  });

  it('follows in-process: de-duplicates the backlog, filters in SQL, and catches up after a lost connection', async () => {
    const events: AuditEvent[] = [];
    const notices: string[] = [];
    const own = await tdb.openPool(1);
    const watch = watchAudit(own.db, { agent: 'dave' }, (e) => events.push(e), {
      backlog: 5,
      onNotice: (m) => notices.push(m),
    });
    try {
      await watch.ready;
      const [d1] = await insert(tdb.db, { agent: 'dave', tool: 'send_sms', decision: 'allowed' });
      await waitFor(() => events.length === 1);
      await insert(tdb.db, { agent: 'erin', tool: 'send_sms', decision: 'allowed' });
      const { rows } = await own.pool.query<{ pid: number }>('select pg_backend_pid() as pid');
      await tdb.pool.query('select pg_terminate_backend($1)', [rows[0]?.pid]);
      const [d2] = await insert(tdb.db, {
        agent: 'dave',
        tool: 'send_email',
        decision: 'denied',
        reason: 'x',
      });
      await waitFor(() => events.length === 2);
      const [d3] = await insert(tdb.db, { agent: 'dave', tool: 'send_email', decision: 'allowed' });
      await waitFor(() => events.length === 3);
      expect(events.map((e) => [e.kind, e.row.id])).toEqual([
        ['row', d1],
        ['row', d2],
        ['row', d3],
      ]);
      // The terminated connection is noticed only if a poll was using it; either way nothing was lost.
      expect(notices.join('\n')).not.toMatch(/retrying(?![\s\S]*again)/);
    } finally {
      await watch.stop();
      await own.close();
    }
  });

  it('reports a row again when it settles, and rows committed out of id order once each', async () => {
    const events: AuditEvent[] = [];
    const watch = watchAudit(tdb.db, { agent: 'frank' }, (e) => events.push(e));
    try {
      await watch.ready;
      // An older id committed after a newer one (ids come from several processes): still reported, once.
      const early = auditRow({ agent: 'frank', tool: 'send_sms', decision: 'allowed', outcome: 'pending' });
      const [late] = await insert(tdb.db, { agent: 'frank', tool: 'send_sms', decision: 'allowed' });
      await waitFor(() => events.length === 1);
      await tdb.db.insertInto('audit_log').values(early).execute();
      await waitFor(() => events.length === 2);
      await tdb.db
        .updateTable('audit_log')
        .set({
          outcome: 'succeeded',
          cost_micros: 8_300,
          cost_status: 'settled',
          vendor_object_id: 'SM_frank',
        })
        .where('id', '=', early.id)
        .execute();
      await waitFor(() => events.length === 3);
      await new Promise((r) => setTimeout(r, 400));
      expect(events.map((e) => [e.kind, e.row.id, e.row.outcome])).toEqual([
        ['row', late, 'succeeded'],
        ['row', early.id, 'pending'],
        ['settle', early.id, 'succeeded'],
      ]);
      const settle = events[2];
      expect(settle?.kind === 'settle' ? settle.previous.outcome : undefined).toBe('pending');
    } finally {
      await watch.stop();
    }
  });

  it('leaves no trigger on audit_log: nothing is notified on the commit path', async () => {
    const { rows } = await tdb.pool.query<{ n: number }>(
      `select count(*)::int as n from pg_trigger where tgrelid = 'audit_log'::regclass and not tgisinternal`,
    );
    expect(rows[0]?.n).toBe(0);
  });

  it('prints a row written by another process as it is committed, prints it again when it settles, and exits 0 on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [LEASH_BIN, 'audit', 'tail', '-f', '--json', '--agent', 'alice', '-n', '2'],
      {
        env: childEnv({ DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' }),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    const arrivals = new Map<string, number>();
    const settles = new Map<string, { at: number; line: Record<string, unknown> }>();
    child.stdout.on('data', (c: Buffer) => {
      const at = performance.now();
      out += c.toString();
      for (const text of out.split('\n').slice(0, -1)) {
        const line = JSON.parse(text) as Record<string, unknown> & { id: string };
        if (line.event === 'settle') {
          if (!settles.has(line.id)) settles.set(line.id, { at, line });
        } else if (!arrivals.has(line.id)) arrivals.set(line.id, at);
      }
    });
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const other = await tdb.openPool(1);
    try {
      // Once the backlog is out, the tail is following.
      await waitFor(() => arrivals.size === 2 || child.exitCode !== null, 20_000);
      expect([...arrivals.keys()], err).toEqual(idsOf('a2_100', 'a2_99'));

      const latencies: number[] = [];
      let aliceRow = '';
      for (let i = 0; i < 5; i++) {
        // Land at a random point of the tail's 100 ms poll cycle.
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
        const [bobRow] = await insert(other.db, { agent: 'bob', tool: 'send_sms', decision: 'allowed' });
        [aliceRow = ''] = await insert(other.db, {
          agent: 'alice',
          tool: 'issue_refund',
          decision: 'allowed',
          outcome: 'pending',
          reserved_micros: 300_000,
          cost_status: 'estimated',
        });
        const committed = performance.now();
        await waitFor(() => arrivals.has(aliceRow));
        latencies.push((arrivals.get(aliceRow) ?? Infinity) - committed);
        expect(arrivals.has(bobRow ?? '')).toBe(false);
      }
      // How soon is measured by bench/audit-volume.ts; a busy machine only makes it later.
      console.info(`audit tail -f, commit → printed: ${latencies.map((l) => l.toFixed(1)).join(', ')} ms`);

      await other.db
        .updateTable('audit_log')
        .set({ outcome: 'succeeded', cost_micros: 300_000, reserved_micros: 0, cost_status: 'settled' })
        .where('id', '=', aliceRow)
        .execute();
      const settledAt = performance.now();
      await waitFor(() => settles.has(aliceRow));
      console.info(
        `audit tail -f, settle → printed: ${((settles.get(aliceRow)?.at ?? 0) - settledAt).toFixed(1)} ms`,
      );
      expect(settles.get(aliceRow)?.line).toMatchObject({
        event: 'settle',
        id: aliceRow,
        outcome: 'succeeded',
        cost_micros: 300_000,
        cost_status: 'settled',
      });
      const lines = out.trimEnd().split('\n');
      expect(lines).toHaveLength(2 + 5 + 1);
      expect(JSON.parse(lines[2] ?? '')).toMatchObject({
        agent: 'alice',
        outcome: 'pending',
        reserved_micros: 300_000,
      });
    } finally {
      child.kill('SIGTERM');
      await other.close();
    }
    expect(await exited, err).toBe(0);
  });

  it('marks a settlement line in the text format', () => {
    const row = {
      ...Object.fromEntries(AUDIT_COLUMNS.map((c) => [c, null])),
      ts: new Date('2026-11-23T10:00:00Z'),
      agent: 'alice',
      tool: 'issue_refund',
      decision: 'allowed',
      outcome: 'succeeded',
      cost_micros: 300_000,
      reserved_micros: 0,
      vendor_object_id: 're_1',
    } as unknown as AuditRow;
    expect(formatAuditLine(row)).toMatch(/issue_refund\s+allowed\s+succeeded\s+\$0\.30\s+re_1$/);
    expect(formatAuditLine(row, 'settled')).toMatch(/issue_refund\s+settled\s+succeeded\s+\$0\.30\s+re_1$/);
  });
});

describe('audit query plans', () => {
  let big: TestDatabase;
  beforeAll(async () => {
    big = await freshDatabase(2);
    const base = Date.now() - 10 * 86_400_000;
    // Refunds are rare (1 in 300) and the other tools common.
    const tools = ['send_sms', 'send_email', 'get_payment', 'get_budget'];
    const rows: Seed[] = Array.from({ length: 6000 }, (_, i) => ({
      agent: `agent-${i % 60}`,
      run_id: `run-${i % 600}`,
      key_id: `key${i % 120}`,
      tool: i % 300 === 7 ? 'issue_refund' : (tools[i % 4] ?? 'send_sms'),
      decision: i % 10 === 0 ? 'denied' : 'allowed',
      cost_micros: ((i * 2_654_435_761) >>> 0) % 200_000_000,
      ts: new Date(base + i * 144_000),
    }));
    for (let i = 0; i < rows.length; i += 1000) await insert(big.db, ...rows.slice(i, i + 1000));
    await big.pool.query('analyze audit_log');
  });
  afterAll(async () => {
    await big?.close();
  });

  const dayAgo = (n: number) => new Date(Date.now() - n * 86_400_000);
  it.each([
    ['one run’s calls', { run: 'run-17' }, /audit_by_run/],
    [
      'an agent’s calls in a time range',
      { agent: 'agent-3', since: dayAgo(4), until: dayAgo(2) },
      /audit_by_agent_ts/,
    ],
    [
      'an agent’s denied calls in a time range',
      { agent: 'agent-3', decision: 'denied' as const, since: dayAgo(4) },
      /audit_by_agent_ts|audit_denied_ts/,
    ],
    ['denied calls in a time range', { decision: 'denied' as const, since: dayAgo(2) }, /audit_denied_ts/],
    [
      'a rare tool over an amount in a day',
      { tool: 'issue_refund', since: dayAgo(3), until: dayAgo(2), minUsdMicros: 100_000_000 },
      /audit_tool_ts/,
    ],
    // The heap is in ts order, so for a tool holding a quarter of the day's rows, walking the day is as cheap.
    [
      'a common tool over an amount in a day',
      { tool: 'send_sms', since: dayAgo(3), until: dayAgo(2), minUsdMicros: 100_000_000 },
      /audit_tool_ts|audit_by_ts/,
    ],
  ])('serves %s from an index', async (_name, filter, index) => {
    const plan = (await auditQuery(big.db, filter).explain()).map((r) => String(r['QUERY PLAN'])).join('\n');
    expect(plan).toMatch(index);
    // audit_log is partitioned by month: the empty ones (months ahead, the default) are scanned for free, and no
    // partition holding rows is read whole.
    for (const [, table] of plan.matchAll(/Seq Scan on (\w+)/g)) {
      const { rows } = await big.pool.query<{ n: number }>(`select count(*)::int as n from ${table}`);
      expect(rows[0]?.n, `${table} is read whole`).toBe(0);
    }
  });
});

describe('parseTime', () => {
  const at = new Date('2026-11-20T12:00:00Z');
  it.each([
    ['30m', '2026-11-20T11:30:00.000Z'],
    ['2h', '2026-11-20T10:00:00.000Z'],
    ['7d', '2026-11-13T12:00:00.000Z'],
    ['2026-11-20', '2026-11-20T00:00:00.000Z'],
    ['2026-11-20T09:15', '2026-11-20T09:15:00.000Z'],
    ['2026-11-20T09:15:30.5+02:00', '2026-11-20T07:15:30.500Z'],
    ['2026-11-20 09:15:30Z', '2026-11-20T09:15:30.000Z'],
  ])('reads %s as %s', (input, expected) => {
    expect(parseTime(input, '--since', at).toISOString()).toBe(expected);
  });
  it('throws an error naming the flag for anything else', () => {
    expect(() => parseTime('2026-13-01', '--until', at)).toThrow(TimeInputError);
    expect(() => parseTime('2026-13-01', '--until', at)).toThrow(/^--until: expected/);
  });
});

/** Until `check` holds; the bound is generous, for a busy machine. */
async function waitFor(check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('auditCsv', () => {
  it('defuses text a spreadsheet would run as a formula, and leaves numbers alone', () => {
    const row = {
      ...Object.fromEntries(AUDIT_COLUMNS.map((c) => [c, null])),
      agent: '=HYPERLINK("x")',
      run_id: '@run',
      cost_micros: 5,
    } as unknown as AuditRow;
    const [, line] = auditCsv([row]).split('\r\n');
    expect(line).toContain(`"'=HYPERLINK(""x"")"`);
    expect(line).toContain(`'@run`);
    expect(line).toContain(',5,');
  });
});
