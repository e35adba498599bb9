// The scale bench's servers other than leash: vendor fakes whose answers take a long-tailed time (log-normal, drawn
// from a seed so leash and bare see the same delays), able to hold every answer at once; and bare MCP servers, each
// its own process (`node dist/bench/scale-servers.js`, started by startBares), on those fakes.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startResendFake, type ResendFake } from '../tools/resend/sandbox.js';
import { startStripeFake, type StripeFake } from '../tools/stripe/sandbox.js';
import { startTwilioFake, type TwilioFake } from '../tools/twilio/sandbox.js';
import { startBareServer } from './bare-server.js';
import { BENCH_CUSTOMER, EMAIL_FROM, SMS_FROM } from './serve-both.js';
import { isMain, repoRoot, runMain } from './support.js';

/** A seeded generator (mulberry32), so leash and bare draw the same delays in the same order. */
export function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Vendors {
  twilio: TwilioFake;
  resend: ResendFake;
  stripe: StripeFake;
  paymentIntents: string[];
  /** Starts a run: delays drawn from `seed`, recorded while `recording()`. */
  reset(seed: number): void;
  recording: boolean;
  /** Delays drawn while recording, ms. */
  delays: number[];
  /** Holds every delayed answer until release(); resolves once `count` answers are held. */
  hold(count: number): { allHeld: Promise<void>; release(): void };
  close(): Promise<void>;
}

export async function startVendors(medianMs: number, sigma: number): Promise<Vendors> {
  const [twilio, resend, stripe] = await Promise.all([
    startTwilioFake({ keep: 100 }),
    startResendFake({ keep: 100 }),
    startStripeFake(false, { keep: 100 }),
  ]);
  const paymentIntents = Array.from(
    { length: 16 },
    () => stripe.addPayment({ customer: BENCH_CUSTOMER, amount: 1_000_000_000 }).payment_intent,
  );
  let next = random(1);
  let gate: { want: number; held: number; onAll(): void; released: Promise<void> } | undefined;
  const v: Vendors = {
    twilio,
    resend,
    stripe,
    paymentIntents,
    recording: false,
    delays: [],
    reset(seed) {
      next = random(seed);
      v.delays = [];
    },
    hold(count) {
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      let onAll!: () => void;
      const allHeld = new Promise<void>((r) => (onAll = r));
      gate = { want: count, held: 0, onAll, released };
      if (count <= 0) onAll();
      return {
        allHeld,
        release: () => {
          gate = undefined;
          release();
        },
      };
    },
    close: async () => {
      await Promise.all([twilio.close(), resend.close(), stripe.close()]);
    },
  };
  // Log-normal: median × e^(σ·z); σ 0.5 puts p99 near 3.2 × the median. Capped at 5 s.
  const pause = async () => {
    const g = gate;
    if (g) {
      if (++g.held === g.want) g.onAll();
      return g.released;
    }
    const u1 = Math.max(next(), 1e-12);
    const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * next());
    const ms = Math.min(5_000, medianMs * Math.exp(sigma * z));
    if (v.recording) v.delays.push(ms);
    return new Promise<void>((r) => setTimeout(r, ms));
  };
  // Each fake calls its own pause() before answering a write (Stripe: POSTs only); Resend only when delayMs is set.
  for (const fake of [twilio, resend, stripe]) {
    fake.pause = pause;
    fake.delayMs = 1;
  }
  return v;
}

export const VENDOR_ENV = {
  TWILIO_ACCOUNT_SID: `AC${'5c'.repeat(16)}`,
  TWILIO_AUTH_TOKEN: '5ca1'.repeat(8),
  RESEND_API_KEY: 're_scale_bench_0123456789',
  STRIPE_SECRET_KEY: 'sk_test_scale_bench_0123456789',
};

// ---------------------------------------------------------------------------------------------------------
// Servers under test: leash replicas or bare servers, each a process

export interface Server {
  url: string;
  pid: number;
}

export interface Servers {
  list: Server[];
  stop(): Promise<void>;
}

/** `node dist/bench/scale-servers.js`: one bare server on the fakes named in SCALE_FAKES; prints {url, pid}. */
async function serveBare(): Promise<void> {
  const fakes = JSON.parse(process.env.SCALE_FAKES ?? '{}') as Record<string, string>;
  if (!fakes.twilio || !fakes.resend) throw new Error('scale-servers needs SCALE_FAKES');
  const bare = await startBareServer({
    twilioUrl: fakes.twilio,
    resendUrl: fakes.resend,
    twilio: { accountSid: VENDOR_ENV.TWILIO_ACCOUNT_SID, authToken: VENDOR_ENV.TWILIO_AUTH_TOKEN },
    resendApiKey: VENDOR_ENV.RESEND_API_KEY,
    smsFrom: SMS_FROM,
    emailFrom: EMAIL_FROM,
  });
  process.stdout.write(JSON.stringify({ url: bare.url, pid: process.pid }) + '\n');
  // Until the parent closes our stdin or signals.
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.stdin.once('end', resolve);
    process.stdin.resume();
  });
  await bare.close();
  process.exit(0);
}

function startBareProcess(v: Vendors): Promise<{ server: Server; child: ChildProcess }> {
  const child = spawn(process.execPath, [join(repoRoot(), 'dist', 'bench', 'scale-servers.js')], {
    env: { ...process.env, SCALE_FAKES: JSON.stringify({ twilio: v.twilio.url, resend: v.resend.url }) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('a bare server did not start within 60 s')), 60_000);
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve({ server: JSON.parse(line) as Server, child });
      } catch {
        reject(new Error(`a bare server printed something else: ${line.slice(0, 200)}`));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`a bare server exited (${code}) before it was ready`));
    });
  });
}

export async function startBares(n: number, v: Vendors): Promise<Servers> {
  const started = await Promise.all(Array.from({ length: n }, () => startBareProcess(v)));
  return {
    list: started.map((s) => s.server),
    stop: async () => {
      await Promise.all(
        started.map(
          ({ child }) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null) return resolve();
              child.once('exit', () => resolve());
              child.stdin?.end();
            }),
        ),
      );
    },
  };
}

if (isMain(import.meta.url)) runMain(serveBare);
