// Covers batched admission (leash_admit_batch): each call of a batch is decided as a call on its own would be, in
// order, against what the calls before it left — caps, the loop guard, keys, stale policies and approvals — and a
// batch returns only after its rows are flushed. Also: concurrent batches over two pools, with scopes whose names
// are prefixes of each other and settles running at the same time, neither deadlock nor pass a cap. And 0011 gives a
// database migrated with 0009's first version the lock helpers its batch functions call.
import pg from 'pg';
import { Kysely, PostgresDialect, sql, type LogEvent } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../src/db/schema.js';
import { AdmissionQueue } from '../src/audit/admission-queue.js';
import { SettleQueue } from '../src/audit/settle-queue.js';
import { uuidv7 } from '../src/audit/uuid.js';
import {
  admissionPayload,
  admitBatch,
  type AdmitRequest,
  type AdmitResult,
  type AuditDraft,
} from '../src/audit/write.js';
import { createLogger } from '../src/config/logger.js';
import { openDatabase } from '../src/db/database.js';
import { authenticate } from '../src/keys/authenticate.js';
import { revokeKeys } from '../src/keys/vault-keys.js';
import { windowsFor } from '../src/ledger/windows.js';
import { runTool, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { up as leanerBatches } from '../src/db/migrations/2026-11-23-0011-leaner-batches.js';
import { catalogConfig } from './support/config.js';
import { freshDatabase, sessionsWith, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, pipelineFor, readAuditRow } from './support/governance.js';
import { startFakeVendor, testCatalog, type FakeVendor } from './fakes/test-tool.js';

let tdb: TestDatabase;
let fake: FakeVendor;
let deps: PipelineDeps;

const USD = 1_000_000;

beforeAll(async () => {
  tdb = await freshDatabase(30);
  fake = await startFakeVendor();
  deps = pipelineFor(tdb.db, testCatalog(fake));
  const policy = (name: string, limits: Record<string, number>, loop = false) =>
    applyTestPolicy(tdb.db, deps.catalog, {
      name,
      limits,
      tools: { charge_test: { max_amount_usd: 50 } },
      ...(loop ? { loop_guard: { identical_calls: 3, window: '10m' } } : {}),
    });
  await policy('near-cap', { daily_usd: 10, per_key_daily_usd: 10, hourly_requests: 1000 });
  await policy('roomy', { daily_usd: 100, per_key_daily_usd: 100, hourly_requests: 1000 });
  // Roomy too, for the one test that reads what its window has left: no other test spends from it.
  await policy('untouched', { daily_usd: 100, per_key_daily_usd: 100, hourly_requests: 1000 });
  await policy('give-back', { daily_usd: 10, per_key_daily_usd: 100, hourly_requests: 1000 });
  await policy('looping', { daily_usd: 100, hourly_requests: 1000 }, true);
  await policy('a', { daily_usd: 5, per_key_daily_usd: 5, hourly_requests: 10_000 });
  await policy('a2', { daily_usd: 5, per_key_daily_usd: 5, hourly_requests: 10_000 });
  await policy('capped-loop', { daily_usd: 1, per_key_daily_usd: 100, hourly_requests: 100_000 }, true);
});

afterAll(async () => {
  await deps.settler.flush();
  await fake.close();
  await tdb.close();
});

type Authed = Extract<Awaited<ReturnType<typeof authenticate>>, { ok: true }>['key'];

async function authed(policy: string, db = tdb.db): Promise<Authed> {
  const minted = await keyFor(db, { policy });
  const auth = await authenticate(db, minted.key);
  if (!auth.ok) throw new Error('the key did not authenticate');
  return auth.key;
}

/** One admission payload for key k: cost in micro-USD, a digest, and optionally a loop guard or an approval. */
function call(
  k: Authed,
  o: {
    cost: number;
    hash?: string;
    loop?: boolean;
    approval?: boolean;
    secretHash?: string;
    policyVersion?: number;
  },
) {
  const guard = k.policy.loopGuard;
  const request: AdmitRequest = {
    keyId: k.id,
    secretHash: o.secretHash ?? k.secret_hash,
    policyVersion: o.policyVersion ?? k.policy.version,
    cost: o.cost,
    windows: windowsFor(k.policy, k.id, new Date(), true),
    loop: o.loop && guard ? { limit: guard.identicalCalls, seconds: guard.windowSeconds } : null,
    approval: o.approval ? { expiresSeconds: 600, usdMicros: o.cost } : undefined,
  };
  const draft: AuditDraft = {
    id: uuidv7(),
    key_id: k.id,
    agent: k.agent,
    run_id: k.run_id,
    policy: k.policy.name,
    policy_version: k.policy.version,
    tool: 'charge_test',
    vendor: 'testvendor',
    operation: 'POST /effects',
    account: null,
    request: { n: o.cost },
    args_hash: o.hash ?? uuidv7(),
    sandbox: false,
    amount: null,
    currency: null,
    metadata: {},
  };
  return admissionPayload(request, draft, deps.auditHash);
}

const codes = (rs: AdmitResult[]) => rs.map((r) => ('stale' in r ? 'stale' : r.admitted ? 'ok' : r.code));
const remaining = (rs: AdmitResult[]) => rs.map((r) => ('stale' in r ? null : r.remaining_micros));

/** The calls of a batch still marked unsettled. */
async function unsettledOf(batch: { row: { id: string } }[]): Promise<{ id: string }[]> {
  return tdb.db
    .selectFrom('audit_unsettled')
    .select('id')
    .where(
      'id',
      'in',
      batch.map((b) => b.row.id),
    )
    .execute();
}

async function reserved(scope: string): Promise<{ usd: number; requests: number }> {
  const rows = await tdb.db.selectFrom('spend_windows').selectAll().where('scope', '=', scope).execute();
  return {
    usd: rows.filter((r) => r.kind === 'usd_day').reduce((a, r) => a + Number(r.reserved_micros), 0),
    requests: rows.filter((r) => r.kind === 'requests_hour').reduce((a, r) => a + Number(r.requests), 0),
  };
}

describe('a batch of admissions', () => {
  it('admits every call that fits, each told what its windows had left after it', async () => {
    const k = await authed('untouched');
    const batch = Array.from({ length: 5 }, () => call(k, { cost: 2 * USD }));
    const rs = await admitBatch(tdb.db, batch);
    expect(codes(rs)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    expect(remaining(rs)).toEqual([98, 96, 94, 92, 90].map((u) => u * USD));
    expect(await reserved(`key:${k.id}`)).toEqual({ usd: 10 * USD, requests: 0 });
    expect(await reserved('policy:untouched')).toEqual({ usd: 10 * USD, requests: 5 });
    const rows = await Promise.all(batch.map((b) => readAuditRow(tdb.db, b.row.id)));
    expect(rows.map((r) => [r.decision, r.outcome, Number(r.reserved_micros)])).toEqual(
      batch.map(() => ['allowed', 'pending', 2 * USD]),
    );
    expect(await unsettledOf(batch)).toHaveLength(5);
  });

  it('decides calls one by one when together they would pass a cap: the ones that fit, in order', async () => {
    const k = await authed('near-cap');
    // $10 a day: six calls of $1.50 fit ($9), the next two do not, a last one of $1 does ($10).
    const batch = [
      ...Array.from({ length: 8 }, () => call(k, { cost: 1.5 * USD })),
      call(k, { cost: 1 * USD }),
    ];
    const rs = await admitBatch(tdb.db, batch);
    expect(codes(rs)).toEqual([
      'ok',
      'ok',
      'ok',
      'ok',
      'ok',
      'ok',
      'budget_exceeded',
      'budget_exceeded',
      'ok',
    ]);
    expect(remaining(rs)).toEqual(
      [8.5, 7, 5.5, 4, 2.5, 1, null, null, 0].map((u) => (u === null ? null : u * USD)),
    );
    const refused = rs[6];
    expect(refused && !('stale' in refused) ? refused.details : {}).toMatchObject({
      cap_micros: 10 * USD,
      remaining_micros: 1 * USD,
      requested_micros: 1.5 * USD,
    });
    expect(await reserved(`key:${k.id}`)).toEqual({ usd: 10 * USD, requests: 0 });
    expect(await reserved('policy:near-cap')).toEqual({ usd: 10 * USD, requests: 7 });
    const denied = await readAuditRow(tdb.db, batch[7]!.row.id);
    expect(denied).toMatchObject({ decision: 'denied', reason: 'budget_exceeded', outcome: 'none' });
    expect(Number(denied.reserved_micros)).toBe(0);
  });

  it('gives back what it reserved when a window passes its cap only with what was reserved before', async () => {
    const k = await authed('give-back');
    // $10 a day for the policy: $8 reserved first. Then $3 fits the cap on its own, not on top. The key's window
    // ($100) is reserved in first, then the policy's refuses: the key's reservation is given back and the calls
    // decided one by one: $1.50 fits, $1.50 does not.
    expect(codes(await admitBatch(tdb.db, [call(k, { cost: 4 * USD }), call(k, { cost: 4 * USD })]))).toEqual(
      ['ok', 'ok'],
    );
    const rs = await admitBatch(tdb.db, [call(k, { cost: 1.5 * USD }), call(k, { cost: 1.5 * USD })]);
    expect(codes(rs)).toEqual(['ok', 'budget_exceeded']);
    expect(remaining(rs)[0]).toBe(0.5 * USD);
    // Nothing of the batch's given-back reservation is left over: exactly the three admitted calls.
    expect(await reserved(`key:${k.id}`)).toEqual({ usd: 9.5 * USD, requests: 0 });
    expect(await reserved('policy:give-back')).toEqual({ usd: 9.5 * USD, requests: 3 });
  });

  it('counts identical calls admitted earlier in the batch against the loop guard', async () => {
    const k = await authed('looping');
    const [first] = await admitBatch(tdb.db, [call(k, { cost: 0, hash: 'same-args', loop: true })]);
    expect(first).toMatchObject({ admitted: true });
    const batch = [
      ...Array.from({ length: 4 }, () => call(k, { cost: 0, hash: 'same-args', loop: true })),
      call(k, { cost: 0, hash: 'other-args', loop: true }),
    ];
    const rs = await admitBatch(tdb.db, batch);
    // Limit 3 in 10 minutes, one already committed: two more pass, then every identical call is refused.
    expect(codes(rs)).toEqual(['ok', 'ok', 'loop_detected', 'loop_detected', 'ok']);
    const refused = rs[2];
    expect(refused && !('stale' in refused) ? refused.details : {}).toEqual({
      identical_calls: 3,
      limit: 3,
      window_seconds: 600,
    });
  });

  it('refuses each call on its own key: revoked, wrong secret, and a stale policy writes nothing', async () => {
    const good = await authed('roomy');
    const revoked = await authed('roomy');
    await revokeKeys(tdb.db, { id: revoked.id }, 'test');
    const batch = [
      call(revoked, { cost: USD }),
      call(good, { cost: USD }),
      call(good, { cost: USD, secretHash: '00'.repeat(32) }),
      call(good, { cost: USD, policyVersion: good.policy.version + 1 }),
    ];
    const rs = await admitBatch(tdb.db, batch);
    expect(codes(rs)).toEqual(['key_revoked', 'ok', 'key_invalid', 'stale']);
    expect(rs[3]).toEqual({ stale: true, policy_version: good.policy.version });
    const revokedRow = await readAuditRow(tdb.db, batch[0]!.row.id);
    const denial = (revokedRow.metadata as { denial?: { revoked_at?: unknown } }).denial;
    expect(typeof denial?.revoked_at).toBe('string');
    const invalid = await readAuditRow(tdb.db, batch[2]!.row.id);
    expect(invalid).toMatchObject({ decision: 'denied', reason: 'key_invalid', agent: null, policy: null });
    const stale = await tdb.db
      .selectFrom('audit_log')
      .select('id')
      .where('id', '=', batch[3]!.row.id)
      .execute();
    expect(stale).toHaveLength(0);
  });

  it('holds identical calls needing a person on one request, and spends an approval on one call only', async () => {
    const k = await authed('roomy');
    const held = await admitBatch(tdb.db, [
      call(k, { cost: USD, hash: 'needs-a-person', approval: true }),
      call(k, { cost: USD, hash: 'needs-a-person', approval: true }),
    ]);
    expect(codes(held)).toEqual(['approval_required', 'approval_required']);
    const ids = held.map((r) => (!('stale' in r) ? r.details.approval_id : undefined));
    expect(ids[0]).toBeDefined();
    expect(ids[1]).toBe(ids[0]);
    await tdb.db
      .updateTable('approvals')
      .set({ status: 'approved', decided_by: 'test', decided_at: new Date() })
      .where('id', '=', String(ids[0]))
      .execute();
    const after = await admitBatch(tdb.db, [
      call(k, { cost: USD, hash: 'needs-a-person', approval: true }),
      call(k, { cost: USD, hash: 'needs-a-person', approval: true }),
    ]);
    // The first spends the approval; the second asks again (a new request), as two calls in a row would.
    expect(codes(after)).toEqual(['ok', 'approval_required']);
    const approval = await tdb.db
      .selectFrom('approvals')
      .selectAll()
      .where('id', '=', String(ids[0]))
      .executeTakeFirstOrThrow();
    expect(approval.status).toBe('used');
  });

  it('returns only once the WAL is flushed past every row of the batch, even where commits are asynchronous by default', async () => {
    // A session whose synchronous_commit is off (an operator's default): checked right after the batch returns,
    // before the WAL writer's next round would flush an asynchronous commit anyway.
    const asyncDb = sessionsWith(tdb.url, { synchronous_commit: 'off' });
    try {
      const k = await authed('roomy');
      const rs = await admitBatch(asyncDb, [
        call(k, { cost: 0 }),
        call(k, { cost: 0 }),
        call(k, { cost: 0 }),
      ]);
      const lsns = rs.map((r) => (!('stale' in r) ? r.durable_lsn : undefined));
      expect(new Set(lsns).size).toBe(1);
      expect(lsns[0]).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      const { rows } = await sql<{ flushed: boolean; setting: string }>`
        select pg_current_wal_flush_lsn() >= ${lsns[0]}::pg_lsn as flushed,
               current_setting('synchronous_commit') as setting`.execute(asyncDb);
      expect(rows[0]).toEqual({ flushed: true, setting: 'off' });
    } finally {
      await asyncDb.destroy();
    }
  });
});

describe('concurrent batches', () => {
  it('neither deadlock nor pass a cap across two pools, with settles running and scope names that prefix others', async () => {
    const other = new pg.Pool({ connectionString: tdb.url, max: 8 });
    const otherDb = new Kysely<Database>({ dialect: new PostgresDialect({ pool: other }) });
    try {
      const keys = [await authed('a'), await authed('a2'), await authed('a'), await authed('a2')];
      const queues = [
        new AdmissionQueue(tdb.db, deps.auditHash),
        new AdmissionQueue(otherDb, deps.auditHash),
      ];
      const log = createLogger({ logLevel: 'silent' }, () => undefined);
      const settlers = [
        new SettleQueue(tdb.db, log, deps.auditHash, 5),
        new SettleQueue(otherDb, log, deps.auditHash, 5),
      ];
      // $5 a day per policy (and per key) at $0.10 a call: exactly 50 admitted per policy, whatever the interleaving.
      const results = await Promise.all(
        Array.from({ length: 240 }, async (_, i) => {
          const k = keys[i % 4]!;
          const p = call(k, { cost: 0.1 * USD });
          const q = i % 2;
          const r = await queues[q]!.admit(
            {
              keyId: p.key_id,
              secretHash: p.secret_hash,
              policyVersion: p.policy_version,
              cost: p.cost,
              windows: p.windows,
              loop: null,
            },
            p.row,
          );
          if (!('stale' in r) && r.admitted) {
            settlers[q]!.enqueue({
              id: p.row.id,
              outcome: 'succeeded',
              cost: p.cost,
              cost_status: 'settled',
              patch: {},
            });
          }
          return { policy: k.policy.name, r };
        }),
      );
      await Promise.all(settlers.map((s) => s.flush()));
      const admitted = (name: string) =>
        results.filter((x) => x.policy === name && !('stale' in x.r) && x.r.admitted).length;
      expect(admitted('a')).toBe(50);
      expect(admitted('a2')).toBe(50);
      expect(
        results.filter((x) => 'stale' in x.r || (!x.r.admitted && x.r.code !== 'budget_exceeded')),
      ).toEqual([]);
      const spent = await tdb.db
        .selectFrom('spend_windows')
        .select(['scope', 'spent_micros', 'reserved_micros'])
        .where('kind', '=', 'usd_day')
        .where('scope', 'in', ['policy:a', 'policy:a2'])
        .execute();
      expect(spent.map((s) => [s.scope, Number(s.spent_micros), Number(s.reserved_micros)]).sort()).toEqual([
        ['policy:a', 5 * USD, 0],
        ['policy:a2', 5 * USD, 0],
      ]);
    } finally {
      await otherDb.destroy();
    }
  });

  it('do not deadlock single admissions when a batch near its cap falls back, with refused calls of other keys', async () => {
    // A batch of [k1: more than the policy has left, k2: refused by the loop guard] locks the policy's row, finds
    // the cap and takes the one-by-one path; meanwhile single admissions of k2 lock k2's rows, then the policy's.
    // Every lock in one order: no deadlock (the batch locked k2's rows before the policy's).
    const other = new pg.Pool({ connectionString: tdb.url, max: 8 });
    const otherDb = new Kysely<Database>({ dialect: new PostgresDialect({ pool: other }) });
    try {
      const k1 = await authed('capped-loop');
      const k2 = await authed('capped-loop');
      await admitBatch(tdb.db, [call(k2, { cost: 0, hash: 'looping', loop: true })]);
      await admitBatch(tdb.db, [call(k2, { cost: 0, hash: 'looping', loop: true })]);
      await admitBatch(tdb.db, [call(k2, { cost: 0, hash: 'looping', loop: true })]);
      // $0.50 of the policy's $1 reserved (never settled): a $0.60 call finds the policy's row and is refused there.
      await admitBatch(tdb.db, [call(k1, { cost: 0.5 * USD })]);
      const failures: unknown[] = [];
      for (let round = 0; round < 25; round++) {
        await Promise.all([
          admitBatch(tdb.db, [
            call(k1, { cost: 0.6 * USD }),
            call(k2, { cost: 0, hash: 'looping', loop: true }),
          ]).then(
            (rs) => expect(codes(rs)).toEqual(['budget_exceeded', 'loop_detected']),
            (e: unknown) => failures.push(e),
          ),
          ...Array.from({ length: 3 }, () =>
            admitBatch(otherDb, [call(k2, { cost: 0 })]).catch((e: unknown) => failures.push(e)),
          ),
        ]);
      }
      expect(failures).toEqual([]);
    } finally {
      await otherDb.destroy();
    }
  });

  it('admits calls that arrive together in one batch statement, and each call still gets its own answer', async () => {
    const statements: string[] = [];
    const counted = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: tdb.pool }),
      log: (e: LogEvent) => void statements.push(e.query.sql),
    });
    const batchedDeps = pipelineFor(counted, testCatalog(fake));
    const minted = await keyFor(tdb.db, { policy: 'roomy' });
    // No call is passed to admission until all 24 have asked for it, so they arrive together however slowly a
    // busy machine runs the stages before it: the batch is forced, not hoped for.
    const queue = batchedDeps.admissions;
    const admit = queue.admit.bind(queue);
    let asked = 0;
    let allAsked!: () => void;
    const together = new Promise<void>((resolve) => (allAsked = resolve));
    queue.admit = async (...args: Parameters<typeof admit>) => {
      if (++asked === 24) allAsked();
      await together;
      return admit(...args);
    };
    const rs = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        runTool(batchedDeps, minted.key, 'charge_test', { amount_cents: 100 + i, customer: 'cus_A' }),
      ),
    );
    await batchedDeps.settler.flush();
    expect(rs.filter((r) => !r.ok)).toEqual([]);
    expect(new Set(rs.map((r) => (r.ok ? r.audit_id : undefined))).size).toBe(24);
    const admissions = statements.filter((s) => /leash_admit_batch|leash_admission/.test(s));
    expect(admissions.some((s) => s.includes('leash_admit_batch'))).toBe(true);
    expect(admissions).toHaveLength(1);
  });
});

describe('sessions whose transactions default to another isolation level', () => {
  /** Admits `size` calls of a key while a revoke of it holds the key's lock, then commits the revoke. */
  async function admitDuringRevoke(db: Kysely<Database>, size: number): Promise<(string | null)[] | Error> {
    const k = await authed('roomy');
    const revoke = await tdb.pool.connect();
    try {
      await revoke.query('begin');
      await revoke.query('select pg_advisory_xact_lock(leash_key_lock_id($1))', [k.id]);
      await revoke.query('update vault_keys set revoked_at = clock_timestamp() where id = $1', [k.id]);
      let settled = false;
      const admitted = admitBatch(
        db,
        Array.from({ length: size }, () => call(k, { cost: 0 })),
      )
        .then(codes, (e: unknown) => (e instanceof Error ? e : new Error(String(e))))
        .finally(() => (settled = true));
      // Until the admission waits on the key's lock (its statement, and with it a snapshot, has started), or has
      // already answered (refused to run at all).
      for (let i = 0; i < 2_000 && !settled; i++) {
        const { rows } = await tdb.pool.query<{ n: number }>(
          `select count(*)::integer as n from pg_locks
             where locktype = 'advisory' and not granted
               and database = (select oid from pg_database where datname = current_database())`,
        );
        if (rows[0]!.n > 0) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      await revoke.query('commit');
      return await admitted;
    } finally {
      revoke.release();
    }
  }

  it('admit no call that waited on a revoke, whatever the isolation level (repeatable read, serializable)', async () => {
    for (const level of ['repeatable read', 'serializable']) {
      const db = sessionsWith(tdb.url, { default_transaction_isolation: level });
      try {
        for (const size of [1, 3]) {
          const r = await admitDuringRevoke(db, size);
          // Refused, or admission failed (and so no vendor is called): never admitted.
          if (Array.isArray(r)) expect(r, `${level}, ${size}`).toEqual(r.map(() => 'key_revoked'));
          else expect(r.message, `${level}, ${size}`).toMatch(/read committed/);
        }
      } finally {
        await db.destroy();
      }
    }
  });

  it('refuse a tool call outside read committed, and the log says why', async () => {
    const db = sessionsWith(tdb.url, { default_transaction_isolation: 'repeatable read' });
    const lines: string[] = [];
    try {
      const rrDeps = pipelineFor(db, testCatalog(fake), undefined, lines);
      const minted = await keyFor(tdb.db, { policy: 'roomy' });
      const r = await runTool(rrDeps, minted.key, 'charge_test', { amount_cents: 100, customer: 'cus_A' });
      expect(r).toMatchObject({ ok: false, failure: { code: 'audit_unavailable' } });
      const failed = lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.msg === 'admission failed');
      expect(failed?.reason).toBe('leash admission needs read committed transactions, not repeatable read');
      await rrDeps.settler.flush();
    } finally {
      await db.destroy();
    }
  });

  it("refuse each call revoked meanwhile on leash's own connections, which set read committed (and ISO dates) for themselves", async () => {
    const url = new URL(tdb.url);
    url.searchParams.set(
      'options',
      '-c default_transaction_isolation=repeatable\\ read -c datestyle=SQL,DMY',
    );
    const handle = await openDatabase(catalogConfig({}), { url: url.toString(), migrate: false, poolMax: 2 });
    try {
      const { rows } = await sql<{ level: string; at: Date }>`
        select current_setting('transaction_isolation') as level,
               timestamptz '2026-02-03 04:05:06+00' as at`.execute(handle.db);
      expect(rows[0]?.level).toBe('read committed');
      // Read back as the same instant (DateStyle SQL, DMY would be 03/02/2026 04:05:06 UTC on the wire).
      expect(rows[0]?.at.toISOString()).toBe('2026-02-03T04:05:06.000Z');
      expect(await admitDuringRevoke(handle.db, 1)).toEqual(['key_revoked']);
      expect(await admitDuringRevoke(handle.db, 3)).toEqual(['key_revoked', 'key_revoked', 'key_revoked']);
    } finally {
      await handle.close();
    }
  });
});

describe('a lock admission cannot get', () => {
  it('fails the admission after leash.admission_lock_timeout instead of holding the agent, alone or batched', async () => {
    const db = sessionsWith(tdb.url, { 'leash.admission_lock_timeout': '300ms' });
    const holder = await tdb.pool.connect();
    try {
      for (const size of [1, 3]) {
        const k = await authed('roomy');
        const calls = Array.from({ length: size }, () => call(k, { cost: USD }));
        const w = calls[0]!.windows.find((x) => x.scope === 'policy:roomy' && x.kind === 'usd_day')!;
        await tdb.pool.query(
          `insert into spend_windows (scope, kind, window_start) values ($1, $2, $3) on conflict do nothing`,
          [w.scope, w.kind, w.window_start],
        );
        // Someone's open transaction holds the policy's window row.
        await holder.query('begin');
        await holder.query(
          `select 1 from spend_windows where scope = $1 and kind = $2 and window_start = $3 for update`,
          [w.scope, w.kind, w.window_start],
        );
        const started = Date.now();
        // The row stays locked until the admission answers: it must give up on its own.
        const r = await admitBatch(db, calls).then(codes, (e: unknown) => e);
        const waited = Date.now() - started;
        await holder.query('rollback');
        expect(r, `${size} call(s)`).toBeInstanceOf(Error);
        expect((r as Error).message).toMatch(/lock timeout/);
        // After the 300 ms set here, not the 10 s default (the bound leaves a busy machine room).
        expect(waited).toBeLessThan(8_000);
        expect(await unsettledOf(calls)).toEqual([]);
      }
    } finally {
      holder.release();
      await db.destroy();
    }
  });
});

describe('batch statements on big tables', () => {
  it('find their rows by primary key: no scan of the key, audit, unsettled or object-owner tables', async () => {
    // Tables far bigger than a batch: a plan that joins a batch by hashing the whole table reads all of it, once
    // per batch. Counted in this transaction's own statistics, so nothing depends on when counters are flushed.
    await sql`insert into vault_keys (id, secret_hash, agent, policy)
                select 'filler-' || g, decode('00', 'hex'), 'filler', 'roomy' from generate_series(1, 5000) g`.execute(
      tdb.db,
    );
    await sql`insert into audit_unsettled (id, ts)
                select gen_random_uuid(), now() from generate_series(1, 20000)`.execute(tdb.db);
    await sql`insert into audit_objects (vendor, object_id, audit_id)
                select 'testvendor', 'filler-' || g, gen_random_uuid() from generate_series(1, 20000) g`.execute(
      tdb.db,
    );
    await sql`insert into audit_log (id, tool, decision, outcome)
                select gen_random_uuid(), 'charge_test', 'denied', 'none' from generate_series(1, 20000)`.execute(
      tdb.db,
    );
    await sql`analyze vault_keys, audit_unsettled, audit_objects, audit_log`.execute(tdb.db);

    const k = await authed('roomy');
    const batch = Array.from({ length: 4 }, () => call(k, { cost: USD }));
    const settles = batch.map((b) => ({
      id: b.row.id,
      outcome: 'succeeded',
      cost: USD,
      cost_status: 'settled',
      patch: { vendor_object_id: `obj-${b.row.id}` },
    }));
    const client = await tdb.pool.connect();
    try {
      await client.query('begin');
      const admitted = await client.query<{ r: AdmitResult[] }>('select leash_admit_batch($1::jsonb) as r', [
        JSON.stringify(batch),
      ]);
      expect(codes(admitted.rows[0]?.r ?? [])).toEqual(['ok', 'ok', 'ok', 'ok']);
      const settled = await client.query<{ n: number }>('select leash_settle_calls($1::jsonb) as n', [
        JSON.stringify(settles),
      ]);
      expect(settled.rows[0]?.n).toBe(4);
      // No sequential scan, and no whole-index scan either: each table holds 5,000 rows or more, a batch reads a few.
      const scans = await client.query<{ relname: string; seq_scan: string; rows_read: string }>(
        `select relname, seq_scan, seq_tup_read + coalesce(idx_tup_fetch, 0) as rows_read
           from pg_stat_xact_user_tables
           where relname in ('vault_keys', 'audit_log', 'audit_unsettled', 'audit_objects') order by relname`,
      );
      expect(scans.rows.map((r) => [r.relname, Number(r.seq_scan), Number(r.rows_read) < 1000])).toEqual([
        ['audit_log', 0, true],
        ['audit_objects', 0, true],
        ['audit_unsettled', 0, true],
        ['vault_keys', 0, true],
      ]);
      await client.query('commit');
    } catch (error) {
      await client.query('rollback');
      throw error;
    } finally {
      client.release();
    }
    expect(await unsettledOf(batch)).toEqual([]);
    // Only the batch's own rows went: the filler is all still there.
    const filler = await sql<{ n: string }>`select count(*) as n from audit_unsettled`.execute(tdb.db);
    expect(Number(filler.rows[0]?.n)).toBeGreaterThanOrEqual(20_000);
  });
});

describe('a database migrated with the first version of 0009', () => {
  it('gets the lock helpers the batch functions call from 0011, and admits batches again', async () => {
    // A database of its own: 0011 leaves its (older) definitions behind, which the other tests here must not meet.
    const own = await freshDatabase(2);
    try {
      await applyTestPolicy(own.db, deps.catalog, {
        name: 'roomy',
        limits: { daily_usd: 100, per_key_daily_usd: 100, hourly_requests: 1000 },
        tools: { charge_test: { max_amount_usd: 50 } },
      });
      // 0009's first version took its locks inline: a database migrated with it has neither helper.
      await sql`drop function leash_lock_batch(jsonb); drop function leash_lock_window(text, text, timestamptz)`.execute(
        own.db,
      );
      try {
        const k = await authed('roomy', own.db);
        await expect(admitBatch(own.db, [call(k, { cost: USD }), call(k, { cost: USD })])).rejects.toThrow(
          /leash_lock_batch/,
        );
      } finally {
        await leanerBatches(own.db);
      }
      const k = await authed('roomy', own.db);
      const rs = await admitBatch(own.db, [call(k, { cost: USD }), call(k, { cost: USD })]);
      expect(codes(rs)).toEqual(['ok', 'ok']);
    } finally {
      await own.close();
    }
  });
});
