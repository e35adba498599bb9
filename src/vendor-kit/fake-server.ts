// The one fake-server base: a real HTTP server on 127.0.0.1, port 0, that records what it received. Every
// vendor's sandbox.ts builds its fake on it, and tests build theirs on it too. Tests can also make it misbehave
// (`inject`): hang, fail with or without acting, answer garbage, reset mid-body, or rate-limit.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

/** A request as the server received it. */
export interface Received {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: string;
}

/**
 * How a fake misbehaves for one request. `_acted` modes let the vendor do what was asked (the refund is made, the
 * message sent) and then spoil the answer; the others do nothing.
 * - `hang`, `hang_acted`: never answer (the client times out)
 * - `error_500`, `error_500_acted`: answer 500 in the vendor's error shape
 * - `garbage_200`: act, then answer 200 with a body that is not JSON (a proxy's HTML page)
 * - `empty_200`: act, then answer 200 with an empty JSON object (what was made is not in it)
 * - `reset_acted`: act, then close the connection halfway through the answer's body
 * - `rate_limited`: answer 429 with `Retry-After` in the vendor's error shape, doing nothing
 */
export type FaultMode =
  | 'hang'
  | 'hang_acted'
  | 'error_500'
  | 'error_500_acted'
  | 'garbage_200'
  | 'empty_200'
  | 'reset_acted'
  | 'rate_limited';

export interface Fault {
  mode: FaultMode;
  /** Only requests with this method (default POST: the fault hits a write, not the reads before it). */
  method?: string;
  /** Only requests to this path (exact, or a pattern); default any. */
  path?: string | RegExp;
  /** `rate_limited`: the Retry-After seconds (default 7). */
  retryAfterSeconds?: number;
  /** How many matching requests it spoils (default 1). */
  times?: number;
}

/** A running fake. `R` is the request as the fake records it (a vendor fake may parse the body its own way). */
export interface RecordingServer<R = Received> {
  url: string;
  port: number;
  /** Every request, in order (the newest `keep`). */
  received: R[];
  /** Milliseconds `pause()` stalls: a fake stalls its answer so a client times out. */
  delayMs: number;
  /** Waits `delayMs`. */
  pause(): Promise<void>;
  /**
   * Spoils the next matching request(s) as `fault` says. Resolves once the fault has been applied to all of them
   * (for `_acted` modes: once the vendor acted), so a test waits on the event, not on a guess of the time.
   */
  inject(fault: Fault): Promise<void>;
  /** Lets the process exit while the server is still open (a shared sandbox must not keep leash alive). */
  unref(): void;
  close(): Promise<void>;
}

export type Handler<R = Received> = (
  req: R,
  res: ServerResponse,
  server: RecordingServer<R>,
) => void | Promise<void>;

/** How many of the newest requests (and objects) a fake keeps, so a long sandbox session holds steady memory. */
export const KEEP_RECENT = 1000;

/** Drops the oldest entries of a list or map beyond `keep`. */
export function trim(store: unknown[] | Map<string, unknown>, keep: number): void {
  if (Array.isArray(store)) {
    if (store.length > keep) store.splice(0, store.length - keep);
    return;
  }
  for (const k of store.keys()) {
    if (store.size <= keep) break;
    store.delete(k);
  }
}

export interface FakeServerOptions<R> {
  /** Newest requests kept in `received` (default KEEP_RECENT). */
  keep?: number;
  /** How a request is recorded (default: as received). */
  record?: (req: Received) => R;
  /** The vendor's error body for an injected failure (status 500 or 429); default `{ error: { message } }`. */
  faultBody?: (status: number, message: string) => unknown;
}

/** A handler's answer, captured instead of sent (an `_acted` fault decides what the client gets). */
interface Captured {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** A body chunk as text (handlers write strings or buffers; a callback passed to `end` is no chunk). */
const text = (chunk: unknown) =>
  typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : '';

/**
 * A stand-in for the response a handler writes to (every fake answers with writeHead, setHeader, write and end):
 * what it wrote is captured, and nothing reaches the client.
 */
function capture(): { res: ServerResponse; answer: Promise<Captured> } {
  let status = 200;
  const headers: Record<string, string> = {};
  let body = '';
  let done!: (c: Captured) => void;
  const answer = new Promise<Captured>((resolve) => (done = resolve));
  const stub = {
    headersSent: false,
    setHeader(name: string, value: unknown) {
      headers[name.toLowerCase()] = String(value);
      return stub;
    },
    writeHead(code: number, h?: Record<string, unknown>) {
      status = code;
      for (const [k, v] of Object.entries(h ?? {})) headers[k.toLowerCase()] = String(v);
      stub.headersSent = true;
      return stub;
    },
    write(chunk: unknown) {
      body += text(chunk);
      return true;
    },
    end(chunk?: unknown) {
      body += text(chunk);
      done({ status, headers, body });
      return stub;
    },
  };
  // The fakes' handlers use only the members above; a test double, never a real response.
  return { res: stub as unknown as ServerResponse, answer };
}

interface ArmedFault {
  fault: Fault;
  left: number;
  applied: () => void;
}

const matches = (f: Fault, r: Received) =>
  r.method === (f.method ?? 'POST') &&
  (f.path === undefined || (typeof f.path === 'string' ? r.path === f.path : f.path.test(r.path)));

/** Starts a recording server; `handler` answers each request after it is recorded. */
export async function startRecordingServer<R = Received>(
  handler: Handler<R>,
  o: FakeServerOptions<R> = {},
): Promise<RecordingServer<R>> {
  const keep = o.keep ?? KEEP_RECENT;
  const received: R[] = [];
  const faults: ArmedFault[] = [];
  const faultBody = o.faultBody ?? ((_status: number, message: string) => ({ error: { message } }));
  const run = (r: R, res: ServerResponse) =>
    Promise.resolve(handler(r, res, fake)).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"error":"fake failed"}');
    });

  /** Answers `r` as the fault says; resolves once the fault is applied (after the vendor acted, if it acts). */
  async function misbehave(f: Fault, r: R, res: ServerResponse): Promise<void> {
    const fail = (status: number, message: string, headers: Record<string, string> = {}) =>
      sendJson(res, status, faultBody(status, message), headers);
    switch (f.mode) {
      case 'hang':
        return; // the socket stays open until the client gives up or the fake closes
      case 'error_500':
        return fail(500, 'internal error (injected fault; nothing was done)');
      case 'rate_limited':
        return fail(429, 'too many requests (injected fault)', {
          'retry-after': String(f.retryAfterSeconds ?? 7),
        });
      default:
        break;
    }
    const c = capture();
    void run(r, c.res);
    const acted = await c.answer;
    if (f.mode === 'hang_acted') return;
    if (f.mode === 'error_500_acted') return fail(500, 'internal error (injected fault after acting)');
    const kept = Object.fromEntries(
      Object.entries(acted.headers).filter(([k]) => k !== 'content-type' && k !== 'content-length'),
    );
    if (f.mode === 'garbage_200') {
      res.writeHead(200, { ...kept, 'content-type': 'text/html' });
      res.end('<html><body><h1>502 Bad Gateway</h1></body></html>');
      return;
    }
    if (f.mode === 'empty_200') return sendJson(res, 200, {}, kept);
    // reset_acted: the head and half the body, then the connection is gone.
    const bytes = Buffer.from(acted.body);
    res.writeHead(acted.status, {
      ...kept,
      'content-type': 'application/json',
      'content-length': String(bytes.length),
    });
    res.write(bytes.subarray(0, Math.floor(bytes.length / 2)), () => res.socket?.destroy());
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const raw: Received = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      // Without `record`, R is Received (the default type argument).
      const r = o.record ? o.record(raw) : (raw as R);
      received.push(r);
      trim(received, keep);
      const armed = faults.find((a) => matches(a.fault, raw));
      if (!armed) return void run(r, res);
      if (--armed.left <= 0) faults.splice(faults.indexOf(armed), 1);
      const last = armed.left <= 0;
      void misbehave(armed.fault, r, res).then(() => {
        if (last) armed.applied();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const fake: RecordingServer<R> = {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    delayMs: 0,
    pause: () => new Promise<void>((resolve) => setTimeout(resolve, fake.delayMs)),
    inject: (fault) =>
      new Promise<void>((applied) => faults.push({ fault, left: fault.times ?? 1, applied })),
    unref: () => void server.unref(),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return fake;
}

/** Answers with a JSON body. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/**
 * For --sandbox: starts a vendor's fake once per process, unref'd, and answers with its URL and the fake
 * secret the vendor client is built with.
 */
export function sharedSandbox<F extends { url: string; unref(): void }>(
  start: () => Promise<F>,
  secret: Readonly<Record<string, string>>,
): () => Promise<{ baseUrl: string; secret: Record<string, string> }> {
  let shared: Promise<{ baseUrl: string; secret: Record<string, string> }> | undefined;
  return () =>
    (shared ??= start().then((fake) => {
      fake.unref();
      return { baseUrl: fake.url, secret: { ...secret } };
    }));
}
