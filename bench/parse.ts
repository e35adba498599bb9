// Parse cost of hostile requests: the worst body shapes at the 1 MB limit (and query strings at Node's 16 KB header
// limit). For each: the door's own parse of it in this process (parse_ms: the limit check and, within the limits,
// the decode), then 16 at a time sent to one `leash serve` replica with a made-up vault key and with a valid one,
// while another process polls /healthz back to back (so the senders' own work does not slow the probe). Reports
// each answer's latency as the sender sees it (uploading 16 MB included) and /healthz p50/p99 during the bursts.
// Targets: parse < 50 ms per body, /healthz p99 < 100 ms.
//   node dist/bench/parse.js [--rounds 5] [--json]
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mintKey } from '../src/keys/vault-keys.js';
import { jsonOverLimit } from '../src/http/json-limits.js';
import { FormLimitError, parseForm } from '../src/vendor-kit/form-parse.js';
import { ruleSpecs } from '../src/pipeline/tool.js';
import { validatePolicy } from '../src/policy/compile.js';
import { applyPolicy } from '../src/policies/store.js';
import { catalog } from '../tools/index.js';
import { startResendFake } from '../tools/resend/sandbox.js';
import { benchDatabase, startCluster } from './cluster.js';
import {
  benchArgs,
  formatTable,
  isMain,
  round,
  runMain,
  summarize,
  type Figure,
  type Result,
} from './support.js';

export interface ParseOptions {
  /** Bursts of 16 per shape and key (default 5). */
  rounds: number;
  concurrency?: number;
  log?: (line: string) => void;
}

const BODY_LIMIT = 1 << 20;
/** Node's default header limit is 16 KiB; the rest of the head takes a few hundred bytes. */
const QUERY_LIMIT = 15_000;
const FROM = 'Bench <bench@acme.com>';
const MADE_UP = `lsk_${'a'.repeat(12)}_${'b'.repeat(52)}`;

const POLICY = {
  name: 'bench-parse',
  tools: { send_email: { from: FROM } },
  vendors: {
    stripe: { http: { 'POST /v1/refunds': {}, 'GET /v1/payment_intents/{id}': {} } },
    resend: { http: { 'POST /emails': { from: FROM } } },
  },
};

/** `head` then `unit(i)` for i = 0, 1, … while the whole stays within `limit` characters, then `tail`. */
function fill(head: string, unit: (i: number) => string, limit: number, tail = ''): string {
  const parts = [head];
  let length = head.length + tail.length;
  for (let i = 0; ; i++) {
    const u = unit(i);
    if (length + u.length > limit) break;
    parts.push(u);
    length += u.length;
  }
  parts.push(tail);
  return parts.join('');
}

const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';

interface Shape {
  name: string;
  path: string;
  method: 'GET' | 'POST';
  type?: string;
  body?: string;
  /** MCP's door: the key as Bearer and the Accept header its transport requires. */
  mcp?: boolean;
}

const mcpCall = (name: string, args: string) =>
  `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"${name}","arguments":${args}}}`;

/** The shapes, built once: each is as large as its door lets it be. */
function shapes(): Shape[] {
  const refund = 'payment_intent=pi_x&amount=1';
  const kb = 'x'.repeat(1000);
  const euro = '%E2%82%AC'.repeat(110); // 990 characters that decode to 110 '€'
  const email = `{"from":"${FROM}","to":"a@acme.com","subject":"s","text":"t","x":`;
  const L = BODY_LIMIT - 64;
  return [
    {
      name: 'form.repeated_name',
      method: 'POST',
      path: '/v1/refunds',
      type: FORM,
      body: fill(refund, () => '&m[a]=1', L),
    },
    {
      name: 'form.distinct_names',
      method: 'POST',
      path: '/v1/refunds',
      type: FORM,
      body: fill(refund, (i) => `&k${i}=1`, L),
    },
    {
      name: 'form.empty_pairs',
      method: 'POST',
      path: '/v1/refunds',
      type: FORM,
      body: fill('', () => '&', L),
    },
    {
      name: 'form.deep_brackets',
      method: 'POST',
      path: '/v1/refunds',
      type: FORM,
      body: fill('a', () => '[x]', L, '=1'),
    },
    {
      name: 'form.long_name',
      method: 'POST',
      path: '/v1/refunds',
      type: FORM,
      body: fill('', () => 'k', L, '=1'),
    },
    {
      // Within every limit: 1,000 parameters of ~1 KB percent-encoded values, all decoded and checked by the schema.
      name: 'form.within_limits',
      method: 'POST',
      path: '/v1/refunds',
      type: FORM,
      body: `${refund}${Array.from({ length: 998 }, (_, i) => `&metadata[k${i}]=${euro}`).join('')}`,
    },
    { name: 'json.deep', method: 'POST', path: '/emails', type: JSON_TYPE, body: fill('', () => '[', L) },
    {
      name: 'json.wide',
      method: 'POST',
      path: '/emails',
      type: JSON_TYPE,
      body: fill(`${email}[0`, () => ',0', L, ']}'),
    },
    {
      name: 'json.within_limits',
      method: 'POST',
      path: '/emails',
      type: JSON_TYPE,
      body: `${email}{${Array.from({ length: 990 }, (_, i) => `"k${i}":"${kb}"`).join(',')}}}`,
    },
    {
      name: 'query.repeated_name',
      method: 'GET',
      path: fill('/v1/payment_intents/pi_x?', () => 'expand[]=a&', QUERY_LIMIT),
    },
    {
      name: 'query.distinct_names',
      method: 'GET',
      path: fill('/v1/payment_intents/pi_x?', (i) => `k${i}=1&`, QUERY_LIMIT),
    },
    {
      name: 'mcp.deep',
      method: 'POST',
      path: '/mcp',
      mcp: true,
      body: mcpCall(
        'send_email',
        fill('', () => '[', L),
      ),
    },
    {
      name: 'mcp.wide',
      method: 'POST',
      path: '/mcp',
      mcp: true,
      body: mcpCall(
        'send_email',
        fill('{"to":"a@acme.com","subject":"s","x":[0', () => ',0', L, ']}'),
      ),
    },
    {
      // Within the limits: one 1 MB string argument (refused by send_email's own 1,000,000-character limit).
      name: 'mcp.big_string',
      method: 'POST',
      path: '/mcp',
      mcp: true,
      body: mcpCall('send_email', `{"to":"a@acme.com","subject":"s","html":"${'h'.repeat(L - 200)}"}`),
    },
  ];
}

async function send(base: string, shape: Shape, key: string): Promise<{ status: number; ms: number }> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (shape.type) headers['content-type'] = shape.type;
  if (shape.mcp) {
    headers['content-type'] = JSON_TYPE;
    headers.accept = 'application/json, text/event-stream';
  }
  const t0 = performance.now();
  const res = await fetch(`${base}${shape.path}`, {
    method: shape.method,
    headers,
    ...(shape.body !== undefined ? { body: shape.body } : {}),
  });
  await res.arrayBuffer();
  return { status: res.status, ms: performance.now() - t0 };
}

/** A child process polling /healthz back to back between `start()` and `stop()`, which returns the latencies (ms). */
function healthProbe(base: string) {
  const script = `
    const lines = require('node:readline').createInterface({ input: process.stdin });
    let on = false, out = [];
    lines.on('line', async (l) => {
      if (l === 'start') { on = true; out = []; while (on) { const t = performance.now();
        try { const r = await fetch(${JSON.stringify(`${base}/healthz`)}); await r.arrayBuffer(); } catch {}
        out.push(performance.now() - t); } }
      else if (l === 'stop') { on = false; setImmediate(() => process.stdout.write(JSON.stringify(out) + '\\n')); }
      else if (l === 'exit') process.exit(0);
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  const answers = createInterface({ input: child.stdout });
  const waiting: ((v: number[]) => void)[] = [];
  answers.on('line', (l) => waiting.shift()?.(JSON.parse(l) as number[]));
  return {
    start: () => child.stdin.write('start\n'),
    stop: () =>
      new Promise<number[]>((resolve) => {
        waiting.push(resolve);
        child.stdin.write('stop\n');
      }),
    close: () => {
      child.stdin.write('exit\n');
      child.stdin.end();
    },
  };
}

/** The door's parse of one shape in this process, ms (median of 9): form or JSON limit check, then the decode. */
function parseMs(shape: Shape): number {
  const text = shape.body ?? shape.path.slice(shape.path.indexOf('?') + 1);
  const json = shape.mcp || shape.type === JSON_TYPE;
  const once = () => {
    if (json) {
      if (!jsonOverLimit(text)) JSON.parse(text);
      return;
    }
    try {
      parseForm(text);
    } catch (error) {
      if (!(error instanceof FormLimitError)) throw error;
    }
  };
  const times: number[] = [];
  for (let i = 0; i < 9; i++) {
    const t0 = performance.now();
    once();
    times.push(performance.now() - t0);
  }
  return summarize(times).p50;
}

export async function runParse(o: ParseOptions): Promise<Result[]> {
  const concurrency = o.concurrency ?? 16;
  const db = await benchDatabase({ poolMax: 4 });
  const resend = await startResendFake();
  const cluster = await startCluster({
    replicas: 1,
    databaseUrl: db.url,
    // Made-up keys stay on the 401 path (not the throttle's cheaper 429) for the whole run.
    env: {
      RESEND_API_KEY: 're_bench_fake_0123456789',
      LEASH_RESEND_BASE_URL: resend.url,
      LEASH_AUTH_FAILURES_PER_MINUTE: '100000',
    },
  });
  const results: Result[] = [];
  try {
    await applyPolicy(db.handle.db, validatePolicy(POLICY, ruleSpecs(catalog)));
    const base = cluster.replicas[0]!.url;
    const keys = {
      made_up: MADE_UP,
      valid: (await mintKey(db.handle.db, { agent: 'bench', policy: POLICY.name })).key,
    };
    // Warm the server (JIT, key cache, connections) on a small request of each door.
    for (let i = 0; i < 20; i++)
      await send(
        base,
        { name: 'warm', method: 'POST', path: '/v1/refunds', type: FORM, body: 'a=1' },
        keys.valid,
      );
    const probe = healthProbe(base);
    for (const shape of shapes()) {
      const parse_ms = round(parseMs(shape));
      for (const [keyName, key] of Object.entries(keys)) {
        const answers: number[] = [];
        const health: number[] = [];
        const statuses = new Map<number, number>();
        let errors = 0;
        let firstError: string | undefined;
        for (let r = 0; r < o.rounds; r++) {
          const burst = Promise.all(
            Array.from({ length: concurrency }, () =>
              send(base, shape, key).then(
                (a) => {
                  answers.push(a.ms);
                  statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
                },
                (error: unknown) => {
                  errors++;
                  firstError ??= error instanceof Error ? error.message : String(error);
                },
              ),
            ),
          );
          probe.start();
          await burst;
          health.push(...(await probe.stop()));
        }
        const a = summarize(answers);
        const h = summarize(health);
        const name = `parse.${shape.name}.${keyName}`;
        const status = [...statuses].map(([s, n]) => `${s}×${n}`).join(' ');
        o.log?.(
          `  ${name}: answer p50 ${round(a.p50)} / max ${round(a.max)} ms (${status}); /healthz p99 ${round(h.p99)} ms`,
        );
        const figures: Record<string, Figure> = {
          bytes: (shape.body ?? shape.path).length,
          parse_ms,
          status,
          answer_p50_ms: round(a.p50),
          answer_p99_ms: round(a.p99),
          answer_max_ms: round(a.max),
          healthz_n: h.n,
          healthz_p50_ms: round(h.p50),
          healthz_p99_ms: round(h.p99),
          healthz_max_ms: round(h.max),
          errors,
        };
        results.push({
          name,
          params: { shape: shape.name, key: keyName, concurrency, rounds: o.rounds },
          figures,
          notes: [
            'one `leash serve` replica in a child process; the senders and the fake Resend in this process; the /healthz probe in another',
            ...(firstError ? [`first error: ${firstError}`] : []),
          ],
        });
      }
    }
    probe.close();
  } finally {
    await cluster.close();
    await resend.close();
    await db.close();
  }
  return results;
}

if (isMain(import.meta.url)) {
  runMain(async () => {
    const args = benchArgs();
    const results = await runParse({
      rounds: args.rounds ?? 5,
      concurrency: args.concurrencies?.[0] ?? 16,
      log: (l) => process.stderr.write(`${l}\n`),
    });
    if (args.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    else
      process.stdout.write(
        formatTable(
          results.map((r) => ({
            shape: r.params.shape as string,
            key: r.params.key as string,
            ...r.figures,
          })),
        ),
      );
  });
}
