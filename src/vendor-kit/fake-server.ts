// The one fake-server base: a real HTTP server on 127.0.0.1, port 0, that records what it received. Every
// vendor's sandbox.ts builds its fake on it, and tests build theirs on it too.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

/** A request as the server received it. */
export interface Received {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: string;
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
}

/** Starts a recording server; `handler` answers each request after it is recorded. */
export async function startRecordingServer<R = Received>(
  handler: Handler<R>,
  o: FakeServerOptions<R> = {},
): Promise<RecordingServer<R>> {
  const keep = o.keep ?? KEEP_RECENT;
  const received: R[] = [];
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
      Promise.resolve(handler(r, res, fake)).catch(() => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end('{"error":"fake failed"}');
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
