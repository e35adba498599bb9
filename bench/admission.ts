// Admission alone, against Postgres: what one admitted call costs the database (CPU per call, calls/s, p50) with no
// MCP, HTTP or vendor in the way — a call admitted alone (`call leash_admission`), and the AdmissionQueue the
// server uses, as it is and with smaller batches; and a floor: the same audit row inserted durably on its own (every
// index and constraint it has, no key check, budget or loop guard), the least a durable audit log costs per call.
// Each admitted call is settled through the real SettleQueue, as the pipeline does. The policy is the overhead bench's (USD and request caps per key and per
// policy, never reached; no loop guard).
//
// Hot rows (`--policies 1,16`): the same admissions from several replicas' queues at once (`--queues`, default 4,
// one AdmissionQueue each, as `leash serve` replicas have), over 256 keys on one policy against the same 256 keys
// spread over 16 policies, each alone and batched: whether one policy's window rows serialize admission.
//
//   node dist/bench/admission.js [--calls 3000] [--concurrency 1,16]
//   node dist/bench/admission.js --policies 1,16 --concurrency 64,256 [--queues 4]
import { sql } from 'kysely';
import { AdmissionQueue } from '../src/audit/admission-queue.js';
import { SettleQueue } from '../src/audit/settle-queue.js';
import { uuidv7 } from '../src/audit/uuid.js';
import { admissionPayload, admitBatch, type AdmitResult, type AuditDraft } from '../src/audit/write.js';
import { auditHasher } from '../src/audit/audit-hash.js';
import { loadConfig } from '../src/config/config.js';
import { createLogger } from '../src/config/logger.js';
import { openDatabase, type DbHandle } from '../src/db/database.js';
import { authenticate } from '../src/keys/authenticate.js';
import { mintKey } from '../src/keys/vault-keys.js';
import { windowsFor } from '../src/ledger/windows.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { validatePolicy } from '../src/policy/compile.js';
import { applyPolicy } from '../src/policies/store.js';
import { catalog, catalogVendors } from '../tools/index.js';
import { BENCH_POLICY } from './serve-both.js';
import {
  benchArgs,
  isMain,
  percentile,
  printResults,
  processTreeCpuMs,
  runMain,
  startDatabase,
  type Result,
} from './support.js';

type Key = Extract<Awaited<ReturnType<typeof authenticate>>, { ok: true }>['key'];

interface Case {
  label: string;
  concurrency: number;
  /** Policies the calls spread over (1: every call on one policy's window rows). Default 1. */
  policies?: number;
  /** AdmissionQueues (replicas) the calls round-robin over. Default 1. */
  queues?: number;
  /**
   * 'single': each call alone; 'queue': the server's AdmissionQueue; a number: that queue, batches of at most that;
   * 'floor': only the audit row, one durable insert per call.
   */
  mode: 'single' | 'queue' | 'floor' | number;
}

export interface AdmissionOptions {
  calls?: number;
  concurrencies?: number[];
  /** Hot rows: run each concurrency with the calls on this many policies (e.g. [1, 16]) instead of the cases above. */
  policies?: number[];
  /** Hot rows: queues (replicas) admitting at once. Default 4. */
  queues?: number;
  log?: (line: string) => void;
}

/** Keys the hot-row cases spread calls over (as many in every case, so only the policy rows differ). */
const HOT_ROW_KEYS = 256;

function payloadFor(key: Key, hasher: ReturnType<typeof auditHasher>, i: number) {
  const draft: AuditDraft = {
    id: uuidv7(),
    key_id: key.id,
    agent: key.agent,
    run_id: key.run_id,
    policy: key.policy.name,
    policy_version: key.policy.version,
    tool: 'send_sms',
    vendor: 'twilio',
    operation: 'POST /2010-04-01/Accounts/{sid}/Messages.json',
    account: null,
    request: { to: `+1555100${String(i % 10_000).padStart(4, '0')}`, segments: 1, body_length: 51 },
    args_hash: hasher.hash(`bench-${i}`).slice(0, 32),
    sandbox: false,
    amount: null,
    currency: null,
    metadata: { facts: { segments: 1 } },
  };
  return admissionPayload(
    {
      keyId: key.id,
      secretHash: key.secret_hash,
      policyVersion: key.policy.version,
      cost: 8300,
      windows: windowsFor(key.policy, key.id, new Date(), true),
      loop: null,
    },
    draft,
    hasher,
  );
}

/** The floor: the admitted row as admission writes it, in one autocommitted (durable) insert, nothing else. */
async function insertAuditRow(handle: DbHandle, p: ReturnType<typeof payloadFor>): Promise<AdmitResult> {
  const row = {
    ...p.row,
    ts: new Date().toISOString(),
    decision: 'allowed',
    outcome: 'pending',
    reserved_micros: 0,
    cost_micros: 0,
    usd_micros: p.cost,
    cost_status: 'estimated',
    budget: [],
    door: 'mcp',
    sandbox: false,
  };
  await sql`insert into audit_log select * from jsonb_populate_record(null::audit_log, ${JSON.stringify(row)}::jsonb)`.execute(
    handle.db,
  );
  return { admitted: true, code: null, details: {}, remaining_micros: null };
}

async function runCase(
  handle: DbHandle,
  keys: readonly Key[],
  postgresPid: number | undefined,
  c: Case,
  calls: number,
): Promise<Result> {
  const hasher = auditHasher(undefined);
  const settler = new SettleQueue(
    handle.db,
    createLogger({ logLevel: 'silent' }, () => undefined),
    hasher,
  );
  // 'queue': the server's AdmissionQueue (batches of up to 64); a number: the same queue, batches of at most that.
  // Several queues stand for several replicas, each admitting one batch at a time.
  const queues = Array.from(
    { length: c.queues ?? 1 },
    () => new AdmissionQueue(handle.db, hasher, typeof c.mode === 'number' ? c.mode : 64),
  );
  const admitOne = (p: ReturnType<typeof payloadFor>, i: number): Promise<AdmitResult> =>
    c.mode === 'floor'
      ? insertAuditRow(handle, p)
      : c.mode === 'single'
        ? admitBatch(handle.db, [p]).then(([r]) => r!)
        : queues[i % queues.length]!.admit(
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

  const latencies: number[] = [];
  let next = 0;
  const cpu0 = postgresPid ? processTreeCpuMs(postgresPid) : undefined;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c.concurrency }, async () => {
      while (next < calls) {
        const i = next++;
        const p = payloadFor(keys[i % keys.length]!, hasher, i);
        const s = performance.now();
        const r = await admitOne(p, i);
        latencies.push(performance.now() - s);
        if ('stale' in r || !r.admitted) throw new Error(`call ${i} was not admitted: ${JSON.stringify(r)}`);
        settler.enqueue({
          id: p.row.id,
          outcome: 'succeeded',
          cost: 8300,
          cost_status: 'pending',
          patch: {},
        });
      }
    }),
  );
  await settler.flush();
  const wallMs = performance.now() - t0;
  const cpu1 = postgresPid ? processTreeCpuMs(postgresPid) : undefined;
  const dbCpu = cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) / calls : null;
  return {
    name: `admission.${c.label}.c${c.concurrency}`,
    params: {
      mode: String(c.mode),
      concurrency: c.concurrency,
      calls,
      policies: c.policies ?? 1,
      queues: c.queues ?? 1,
      keys: keys.length,
    },
    figures: {
      calls_per_s: Math.round((calls * 1000) / wallMs),
      p50_ms: Math.round(percentile(latencies, 50) * 100) / 100,
      db_cpu_ms_per_call: dbCpu === null ? null : Math.round(dbCpu * 1000) / 1000,
    },
    notes: [
      'db_cpu_ms_per_call: the Postgres server and its backends (embedded only), admission and settle together.',
    ],
  };
}

export async function runAdmission(o: AdmissionOptions = {}): Promise<Result[]> {
  const calls = o.calls ?? 3000;
  const concurrencies = o.concurrencies ?? [1, 16];
  const db = await startDatabase();
  let handle: DbHandle | undefined;
  try {
    const config = loadConfig(
      {
        DATABASE_URL: db.url,
        LEASH_HOME: '/nonexistent/leash-bench',
        LEASH_LOG: 'silent',
      },
      catalogVendors,
    );
    // Hot rows: 64 connections, what four `leash serve` replicas' pools (16 each) hold.
    const hot = o.policies?.length ? o.policies : undefined;
    handle = await openDatabase(config, { poolMax: hot ? 64 : 24 });
    const db0 = handle.db;
    const keysOn = async (policies: number, perPolicy: number): Promise<Key[]> => {
      const keys: Key[] = [];
      for (let p = 0; p < policies; p++) {
        const doc = validatePolicy(
          {
            ...BENCH_POLICY,
            name: policies === 1 && perPolicy === 1 ? BENCH_POLICY.name : `hot-${policies}-${p}`,
          },
          ruleSpecs(catalog),
        );
        await applyPolicy(db0, doc);
        for (let k = 0; k < perPolicy; k++) {
          const minted = await mintKey(db0, {
            agent: `bench-agent-${k}`,
            runId: 'admission',
            policy: doc.name,
          });
          const auth = await authenticate(db0, minted.key);
          if (!auth.ok) throw new Error('a bench key did not authenticate');
          keys.push(auth.key);
        }
      }
      return keys;
    };
    const cases: { c: Case; keys: Key[] }[] = [];
    if (hot) {
      const queues = o.queues ?? 4;
      for (const policies of hot) {
        const keys = await keysOn(policies, Math.ceil(HOT_ROW_KEYS / policies));
        for (const concurrency of concurrencies) {
          const tag = `p${policies}`;
          cases.push({ c: { label: `hot_${tag}_single`, concurrency, mode: 'single', policies }, keys });
          cases.push({
            c: { label: `hot_${tag}_queue${queues}`, concurrency, mode: 'queue', policies, queues },
            keys,
          });
        }
      }
    } else {
      const keys = await keysOn(1, 1);
      for (const concurrency of concurrencies) {
        cases.push({ c: { label: 'floor', concurrency, mode: 'floor' }, keys });
        cases.push({ c: { label: 'single', concurrency, mode: 'single' }, keys });
        cases.push({ c: { label: 'queue', concurrency, mode: 'queue' }, keys });
        if (concurrency > 1) {
          cases.push({ c: { label: 'queue_max3', concurrency, mode: 3 }, keys });
          cases.push({ c: { label: 'queue_max16', concurrency, mode: 16 }, keys });
        }
      }
    }
    const results: Result[] = [];
    for (const { c, keys } of cases) {
      o.log?.(`admission: ${c.label} at concurrency ${c.concurrency}, ${calls} calls`);
      results.push(await runCase(handle, keys, db.postgresPid, c, calls));
    }
    return results;
  } finally {
    await handle?.close();
    await db.cleanup();
  }
}

async function main(): Promise<void> {
  const a = benchArgs();
  const results = await runAdmission({
    ...(a.calls !== undefined && { calls: a.calls }),
    ...(a.concurrencies !== undefined && { concurrencies: a.concurrencies }),
    ...(a.policies !== undefined && { policies: a.policies }),
    ...(a.queues !== undefined && { queues: a.queues }),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  printResults(results, a.json);
}

if (isMain(import.meta.url)) runMain(main);
