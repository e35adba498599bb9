// The small HTTP kit every route on `leash serve` shares (the doors, the admin API, the console, approval links):
// JSON answers, the error a handler throws for a 4xx, and request bodies read under one size limit.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { jsonOverLimit } from './json-limits.js';

/** A route mounted beside /mcp (the admin API, say). Returns false when the path is not its own. */
export type RouteHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  body: () => Promise<unknown>,
  /** The body's bytes as sent (form-encoded bodies, say), under the same size limit; empty when none. */
  raw: () => Promise<Buffer>,
) => Promise<boolean>;

/** The largest request body read. */
export const MAX_BODY = 1 << 20;
/** An over-limit body is drained (so the 413 is not lost to a reset) up to this much, then cut off. */
const MAX_DRAIN = 16 * MAX_BODY;

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
    /** The JSON-RPC error code when the answer goes to an MCP client (default: Invalid Request). */
    readonly rpcCode = -32600,
  ) {
    super(message);
  }
}

/** JSON too deep or too wide is refused before anything walks it (the SDK's validation, the loop guard's hash). */
export function parseBody(raw: Buffer): unknown {
  if (!raw.length) return undefined;
  const text = raw.toString('utf8');
  const over = jsonOverLimit(text);
  if (over) throw new HttpError(400, over);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError(400, 'request body is not valid JSON', -32700);
  }
}

/** The request body, at most MAX_BODY bytes (HttpError 413 past it). */
export function readRaw(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const tooLarge = () => new HttpError(413, `request body is over ${MAX_BODY} bytes`);
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) return void chunks.push(c);
      // Keep reading and dropping: answering while the client still writes would reset the connection.
      chunks.length = 0;
      if (size > MAX_DRAIN) {
        req.pause();
        reject(tooLarge());
      }
    });
    req.on('end', () => {
      if (size > MAX_BODY) return reject(tooLarge());
      resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

/** 429 for an address that presented too many wrong secrets; `jsonRpc` shapes the body for /mcp. */
export function tooManyFailures(res: ServerResponse, retryAfter: number, jsonRpc: boolean) {
  const message = `too many failed authentication attempts from this address; retry after ${retryAfter}s`;
  sendJson(
    res,
    429,
    jsonRpc
      ? { jsonrpc: '2.0', error: { code: -32029, message, data: { retry_after: retryAfter } }, id: null }
      : { error: message, retry_after: retryAfter },
    { 'retry-after': String(retryAfter) },
  );
}
