import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import {
  KEEP_RECENT,
  sendJson,
  sharedSandbox,
  startRecordingServer,
  trim,
  type Received,
  type RecordingServer,
} from '../../src/vendor-kit/fake-server.js';

export { KEEP_RECENT };

export interface FakeRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body, or null when there was none. */
  body: unknown;
  /** The body as sent (an idempotent replay must match it byte for byte). */
  raw: string;
  query: URLSearchParams;
}

export interface FakeEmail {
  object: 'email';
  id: string;
  from: string;
  to: string[];
  subject: string;
  text: string | null;
  html: string | null;
  reply_to: string[] | null;
  cc: null;
  bcc: null;
  tags: { name: string; value: string }[];
  created_at: string;
  scheduled_at: null;
  last_event: 'delivered';
  message_id: string;
}

type ErrorBody = { name: string; message: string };

/** A local Resend: enough of `POST /emails`, `GET /emails` and `GET /emails/{id}` for the SDK. */
export interface ResendFake extends RecordingServer<FakeRequest> {
  /** Emails actually sent (one per idempotency key; the newest KEEP_RECENT). */
  sent: FakeEmail[];
  /** Answers the next request with this Resend-shaped error instead. */
  failNext(status: number, body: ErrorBody | ((req: FakeRequest) => ErrorBody)): void;
}

const str = (v: unknown): v is string => typeof v === 'string' && v.length > 0;
const list = (v: unknown): string[] | null =>
  str(v) ? [v] : Array.isArray(v) && v.length > 0 && v.every(str) ? v : null;

const isTag = (t: unknown): t is { name: string; value: string } =>
  typeof t === 'object' && t !== null && 'name' in t && str(t.name) && 'value' in t && str(t.value);

/** A request with its JSON body parsed (the raw text when it is not JSON). */
function record(r: Received): FakeRequest {
  let body: unknown;
  try {
    body = r.body ? JSON.parse(r.body) : null;
  } catch {
    body = r.body;
  }
  return { method: r.method, path: r.path, headers: r.headers, body, raw: r.body, query: r.query };
}

/**
 * Starts a fake Resend API on 127.0.0.1, port 0, keeping the newest `keep` requests and emails. Every route
 * needs a bearer key (401 missing_api_key); with `apiKey`, any other key gets Resend's 403 invalid_api_key.
 */
export async function startResendFake(o: { keep?: number; apiKey?: string } = {}): Promise<ResendFake> {
  const keep = o.keep ?? KEEP_RECENT;
  const sent: FakeEmail[] = [];
  const byKey = new Map<string, { email: FakeEmail; body: string }>();
  let failure: { status: number; body: ErrorBody | ((req: FakeRequest) => ErrorBody) } | undefined;

  type Answer = [status: number, body: unknown];
  const error = (status: number, name: string, message: string): Answer => [
    status,
    { statusCode: status, name, message },
  ];

  function send(req: FakeRequest, raw: string): Answer {
    const b = (req.body ?? {}) as Record<string, unknown>; // a JSON object, checked field by field below
    const to = list(b.to);
    if (!str(b.from) || !to || !str(b.subject) || !(str(b.text) || str(b.html)))
      return error(422, 'validation_error', 'from, to, subject and text or html are required');
    const key = req.headers['idempotency-key'];
    const earlier = typeof key === 'string' ? byKey.get(key) : undefined;
    if (earlier && earlier.body !== raw)
      return error(409, 'invalid_idempotent_request', 'Same idempotency key used with a different payload');
    if (earlier) return [200, { id: earlier.email.id }];
    const id = randomUUID();
    const email: FakeEmail = {
      object: 'email',
      id,
      from: b.from,
      to,
      subject: b.subject,
      text: str(b.text) ? b.text : null,
      html: str(b.html) ? b.html : null,
      reply_to: list(b.reply_to),
      cc: null,
      bcc: null,
      tags: Array.isArray(b.tags) ? b.tags.filter(isTag) : [],
      created_at: new Date().toISOString(),
      scheduled_at: null,
      last_event: 'delivered',
      message_id: `<${id}@fake.resend>`,
    };
    sent.push(email);
    trim(sent, keep);
    if (typeof key === 'string') {
      byKey.set(key, { email, body: raw });
      trim(byKey, keep);
    }
    return [200, { id }];
  }

  function route(req: FakeRequest, raw: string, query: URLSearchParams): Answer {
    const key = /^Bearer (\S+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
    if (!key) return error(401, 'missing_api_key', 'Missing API key in the authorization header');
    if (o.apiKey !== undefined && key !== o.apiKey)
      return error(403, 'invalid_api_key', 'API key is invalid');
    if (req.method === 'POST' && req.path === '/emails') return send(req, raw);
    if (req.method === 'GET' && req.path === '/emails') {
      const newest = [...sent].reverse();
      const after = query.get('after');
      const start = after ? newest.findIndex((e) => e.id === after) + 1 : 0;
      const limit = Math.min(Number(query.get('limit') ?? 20), 100);
      const data = newest
        .slice(start, start + limit)
        .map(({ text: _t, html: _h, tags: _g, object: _o, ...e }) => e);
      return [200, { object: 'list', has_more: start + limit < newest.length, data }];
    }
    if (req.method === 'GET' && req.path.startsWith('/emails/')) {
      const email = sent.find((e) => e.id === req.path.slice('/emails/'.length));
      return email ? [200, email] : error(404, 'not_found', 'Email not found');
    }
    return error(405, 'method_not_allowed', `${req.method} ${req.path} is not faked`);
  }

  // The email is sent at once; only the answer waits delayMs, so a client that gives up loses just the answer.
  const server = await startRecordingServer<FakeRequest>(
    async (req, res, self) => {
      let answer: Answer;
      if (failure) {
        const e = typeof failure.body === 'function' ? failure.body(req) : failure.body;
        answer = error(failure.status, e.name, e.message);
        failure = undefined;
      } else answer = route(req, req.raw, req.query);
      if (self.delayMs > 0) await self.pause();
      sendJson(res, answer[0], answer[1]);
    },
    {
      record,
      keep,
      faultBody: (status, message) => ({
        statusCode: status,
        name: status === 429 ? 'rate_limit_exceeded' : 'internal_server_error',
        message,
      }),
    },
  );
  return Object.assign(server, {
    sent,
    failNext: (status: number, body: ErrorBody | ((req: FakeRequest) => ErrorBody)) =>
      void (failure = { status, body }),
  });
}

/** --sandbox: one local Resend per process. */
const SANDBOX_KEY = 're_sandbox';
export const resendSandbox = sharedSandbox(() => startResendFake({ apiKey: SANDBOX_KEY }), {
  api_key: SANDBOX_KEY,
});
