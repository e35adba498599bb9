import { secretForms } from '../credentials/credentials.js';
import { scrubVendorError, type VendorError } from '../pipeline/errors.js';

/** What an error mapper knows besides the error itself. */
export interface ErrorContext {
  vendor: string;
  /** Every form of the credential's secret values (see `secretForms`), to scrub from anything the vendor said. */
  secrets: readonly string[];
  /** The guard's timer fired before the call settled: the vendor may still have acted. */
  timedOut: boolean;
  timeoutMs: number;
}

/** The one signature of every vendor's errors.ts: whatever a call threw or returned as an error → one VendorError. */
export type ErrorMapper = (error: unknown, ctx: ErrorContext) => VendorError;

/** A vendor SDK behind the guard: every call has a hard timeout, and every failure leaves as a scrubbed VendorError. */
export interface GuardedClient<Sdk> {
  /** Runs one SDK call; `signal` aborts at the timeout (pass it to the SDK where it takes one). */
  run<T>(call: (sdk: Sdk, signal: AbortSignal) => Promise<T>): Promise<T>;
}

export interface GuardOptions {
  vendor: string;
  map: ErrorMapper;
  /** Raw secret values of the credential the SDK was built with. */
  secrets: readonly string[];
  timeoutMs: number;
}

/** The one client guard: timeout, error mapping through the vendor's mapper, scrubbing of every secret form. */
export function guardClient<Sdk>(sdk: Sdk, o: GuardOptions): GuardedClient<Sdk> {
  const forms = secretForms(o.secrets);
  return {
    async run(call) {
      const signal = AbortSignal.timeout(o.timeoutMs);
      const timer = new Promise<never>((_resolve, reject) =>
        signal.addEventListener('abort', () => reject(timeoutError(o.timeoutMs)), { once: true }),
      );
      const work = call(sdk, signal);
      // Either may reject after the race is decided; that later rejection is expected, not unhandled.
      timer.catch(() => undefined);
      work.catch(() => undefined);
      try {
        return await Promise.race([work, timer]);
      } catch (error) {
        const ctx = { vendor: o.vendor, secrets: forms, timedOut: signal.aborted, timeoutMs: o.timeoutMs };
        throw scrubVendorError(o.map(error, ctx), forms);
      }
    },
  };
}

function timeoutError(ms: number): Error {
  const e = new Error(`no answer within ${ms} ms`);
  e.name = 'TimeoutError';
  return e;
}
