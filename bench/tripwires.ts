// What tripwires cost admission: the overhead bench's policy with and without its two wires (calls_per_minute and
// spend_usd_per_10m per key, never reached), the same admissions against Postgres with no MCP, HTTP or vendor in the
// way, alternating (off, on, on, off, …) so a busy machine's drift falls on both. Per case: Postgres CPU per admitted
// call (the embedded server's processes), calls/s and p50 — a call alone (`call leash_admission`) and the server's
// AdmissionQueue (batches: with wires, decided one call at a time in the batch's transaction). `shadow`: the policy
// without wires, with a shadow version (`policies apply --shadow`) whose caps are tighter, never reached: its caps
// and the row's metadata.shadow measured in the same statement (batches then decided one call at a time too).
//
//   node dist/bench/tripwires.js [--calls 2000] [--concurrency 1,16] [--rounds 4] [--json]
import { AdmissionQueue } from '../src/audit/admission-queue.js';
import { auditHasher } from '../src/audit/audit-hash.js';
import { uuidv7 } from '../src/audit/uuid.js';
import { admissionPayload, admitBatch, type AdmitRequest, type AuditDraft } from '../src/audit/write.js';
import { loadConfig } from '../src/config/config.js';
import { openDatabase, type DbHandle } from '../src/db/database.js';
import { authenticate } from '../src/keys/authenticate.js';
import { mintKey } from '../src/keys/vault-keys.js';
import { windowsFor } from '../src/ledger/windows.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { validatePolicy } from '../src/policy/compile.js';
import { recipientsOf, tripwiresFor } from '../src/policy/tripwires.js';
import { applyPolicy, loadShadows } from '../src/policies/store.js';
import type { CompiledPolicy } from '../src/policy/compile.js';
import { catalog, catalogVendors } from '../tools/index.js';
import { BENCH_POLICY, BENCH_TRIPWIRES } from './serve-both.js';
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
type Mode = 'single' | 'queue';
type Variant = 'off' | 'on' | 'shadow';
const VARIANTS: readonly Variant[] = ['off', 'on', 'shadow'];

const hasher = auditHasher(undefined);

function call(key: Key, i: number, shadow?: CompiledPolicy): { request: AdmitRequest; draft: AuditDraft } {
  const to = `+1555100${String(i % 10_000).padStart(4, '0')}`;
  const shadowed = shadow && {
    request: { shadow: { windows: windowsFor(shadow, key.id, new Date(), true), cost: 8300 } },
    metadata: { shadow: { version: shadow.version, decision: 'allowed', code: null } },
  };
  return {
    request: {
      keyId: key.id,
      secretHash: key.secret_hash,
      policyVersion: key.policy.version,
      cost: 8300,
      windows: windowsFor(key.policy, key.id, new Date(), true),
      loop: null,
      tripwires: tripwiresFor(key.policy, key),
      recipients: recipientsOf({ recipients: [to] }),
      ...shadowed?.request,
    },
    draft: {
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
      request: { to, segments: 1, body_length: 51 },
      args_hash: hasher.hash(`bench-${i}`).slice(0, 32),
      sandbox: false,
      amount: null,
      currency: null,
      metadata: { facts: { segments: 1 }, ...shadowed?.metadata },
    },
  };
}

async function measure(
  handle: DbHandle,
  key: Key,
  postgresPid: number | undefined,
  mode: Mode,
  concurrency: number,
  calls: number,
  shadow: CompiledPolicy | undefined,
): Promise<{ cpu: number | null; latencies: number[]; wallMs: number }> {
  const queue = new AdmissionQueue(handle.db, hasher);
  const latencies: number[] = [];
  let next = 0;
  const cpu0 = postgresPid ? processTreeCpuMs(postgresPid) : undefined;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < calls) {
        const { request, draft } = call(key, next++, shadow);
        const s = performance.now();
        const r =
          mode === 'single'
            ? (await admitBatch(handle.db, [admissionPayload(request, draft, hasher)]))[0]
            : await queue.admit(request, draft);
        latencies.push(performance.now() - s);
        if (!r || 'stale' in r || !r.admitted) throw new Error(`not admitted: ${JSON.stringify(r)}`);
      }
    }),
  );
  const wallMs = performance.now() - t0;
  const cpu1 = postgresPid ? processTreeCpuMs(postgresPid) : undefined;
  return { cpu: cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) / calls : null, latencies, wallMs };
}

export async function runTripwires(
  o: { calls?: number; concurrencies?: number[]; rounds?: number; log?: (line: string) => void } = {},
): Promise<Result[]> {
  const calls = o.calls ?? 2000;
  const rounds = o.rounds ?? 4;
  const db = await startDatabase();
  let handle: DbHandle | undefined;
  try {
    const config = loadConfig(
      { DATABASE_URL: db.url, LEASH_HOME: '/nonexistent/leash-bench', LEASH_LOG: 'silent' },
      catalogVendors,
    );
    handle = await openDatabase(config, { poolMax: 24 });
    const keys = {} as Record<Variant, Key>; // every variant filled just below
    let shadow: CompiledPolicy | undefined;
    for (const variant of VARIANTS) {
      const name = `bench-tripwires-${variant}`;
      const doc = validatePolicy(
        { ...BENCH_POLICY, name, ...(variant === 'on' ? { tripwires: BENCH_TRIPWIRES } : {}) },
        ruleSpecs(catalog),
      );
      await applyPolicy(handle.db, doc);
      if (variant === 'shadow') {
        const tighter = { ...BENCH_POLICY.limits, daily_usd: 500_000, per_key_daily_usd: 500_000 };
        const shadowDoc = validatePolicy({ ...BENCH_POLICY, name, limits: tighter }, ruleSpecs(catalog));
        await applyPolicy(handle.db, shadowDoc, undefined, { shadow: true });
        shadow = (await loadShadows(handle.db)).get(name);
      }
      const minted = await mintKey(handle.db, { agent: 'bench-agent', runId: name, policy: name });
      const auth = await authenticate(handle.db, minted.key);
      if (!auth.ok) throw new Error('the bench key did not authenticate');
      keys[variant] = auth.key;
    }
    const results: Result[] = [];
    for (const concurrency of o.concurrencies ?? [1, 16]) {
      for (const mode of ['single', 'queue'] as const) {
        const runs = { off: [], on: [], shadow: [] } as Record<
          Variant,
          Awaited<ReturnType<typeof measure>>[]
        >;
        for (let r = 0; r < rounds; r++) {
          // Rotated each round, so a busy machine's drift falls on every variant alike.
          for (const variant of VARIANTS.map((_, i) => VARIANTS[(i + r) % VARIANTS.length]!)) {
            o.log?.(
              `tripwires: ${mode} c=${concurrency} ${variant}, round ${r + 1}/${rounds}, ${calls} calls`,
            );
            const s = variant === 'shadow' ? shadow : undefined;
            runs[variant].push(
              await measure(handle, keys[variant], db.postgresPid, mode, concurrency, calls, s),
            );
          }
        }
        const figures = (w: Variant) => {
          const cpus = runs[w].map((m) => m.cpu).filter((c): c is number => c !== null);
          return {
            [`${w}_db_cpu_ms_per_call`]: cpus.length ? Math.round(percentile(cpus, 50) * 1000) / 1000 : null,
            [`${w}_calls_per_s`]: Math.round(
              percentile(
                runs[w].map((m) => (calls * 1000) / m.wallMs),
                50,
              ),
            ),
            [`${w}_p50_ms`]:
              Math.round(
                percentile(
                  runs[w].flatMap((m) => m.latencies),
                  50,
                ) * 100,
              ) / 100,
          };
        };
        results.push({
          name: `tripwires.${mode}.c${concurrency}`,
          params: { mode, concurrency, calls, rounds },
          figures: { ...figures('off'), ...figures('on'), ...figures('shadow') },
          notes: [
            'off: the overhead bench policy; on: the same with two tripwires per key (calls_per_minute, spend_usd_per_10m), never reached; shadow: off with a shadow version (tighter caps, never reached).',
            'Figures are medians over the rounds (p50 over every call); db_cpu: the embedded Postgres server and its backends.',
          ],
        });
      }
    }
    return results;
  } finally {
    await handle?.close();
    await db.cleanup();
  }
}

async function main(): Promise<void> {
  const a = benchArgs();
  const results = await runTripwires({
    ...(a.calls !== undefined && { calls: a.calls }),
    ...(a.concurrencies !== undefined && { concurrencies: a.concurrencies }),
    ...(a.rounds !== undefined && { rounds: a.rounds }),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  printResults(results, a.json);
}

if (isMain(import.meta.url)) runMain(main);
