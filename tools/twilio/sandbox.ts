import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import {
  sharedSandbox,
  startRecordingServer,
  KEEP_RECENT,
  trim,
  type Received,
  type RecordingServer,
} from '../../src/vendor-kit/fake-server.js';
import { countSegments } from './segments.js';

export interface TwilioFakeRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The form (POST) or query (GET) parameters. */
  form: Record<string, string>;
}

export interface TwilioErrorBody {
  code: number;
  message: string;
  more_info: string;
  status: number;
}

/** A local Twilio Messages API on 127.0.0.1, for tests and --sandbox. Records every request. */
export interface TwilioFake extends RecordingServer<TwilioFakeRequest> {
  /** Answers the next request with this status and a Twilio-shaped error body (built from the request if a function). */
  failNext(
    status: number,
    body?: Partial<TwilioErrorBody> | ((req: TwilioFakeRequest) => Partial<TwilioErrorBody>),
  ): void;
  /** Prices messages when fetched: micro-USD per segment, or Twilio's own string (e.g. "-0.00790"); null unprices. */
  setPrice(price: number | string | null): void;
  /** Messages actually made, by SID (the newest `keep`). */
  messages: ReadonlyMap<string, Readonly<Record<string, unknown>>>;
}

type Message = Record<string, string | number | null | Record<string, string>>;

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const rfc2822 = (d: Date) => d.toUTCString().replace('GMT', '+0000');
const MESSAGES = /^\/2010-04-01\/Accounts\/(AC[0-9a-zA-Z]+)\/Messages(?:\/(SM[0-9a-f]{32}))?\.json$/;
const ACCOUNT = /^\/2010-04-01\/Accounts\/(AC[0-9a-zA-Z]+)\.json$/;

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'twilio-request-id': `RQ${hex(16)}` });
  res.end(JSON.stringify(body));
}

function twilioError(status: number, code: number, message: string, extra: Partial<TwilioErrorBody> = {}) {
  return { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status, ...extra };
}

/** The basic-auth user (the account SID) and password (the auth token) of a request. */
function basicAuth(header: string | undefined): { user?: string; password?: string } {
  const m = /^Basic (.+)$/.exec(header ?? '');
  if (!m?.[1]) return {};
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i < 0 ? { user: text } : { user: text.slice(0, i), password: text.slice(i + 1) };
}

/** The Account resource as Twilio returns it (auth_token included, as the real API does). */
function accountJson(sid: string, authToken: string | undefined) {
  const now = rfc2822(new Date());
  return {
    sid,
    owner_account_sid: sid,
    friendly_name: 'leash fake account',
    status: 'active',
    type: 'Full',
    auth_token: authToken ?? null,
    date_created: now,
    date_updated: now,
    uri: `/2010-04-01/Accounts/${sid}.json`,
    subresource_uris: { messages: `/2010-04-01/Accounts/${sid}/Messages.json` },
  };
}

/** The form (POST) or query (GET) parameters of a request. */
function record(r: Received): TwilioFakeRequest {
  const params = r.method === 'POST' ? new URLSearchParams(r.body) : r.query;
  return {
    method: r.method,
    path: r.path,
    headers: r.headers,
    body: r.body,
    form: Object.fromEntries(params),
  };
}

/**
 * Starts a fake Twilio on 127.0.0.1, port 0, keeping the newest `keep` requests and messages. The basic-auth
 * user must be the account in the path; with `authToken`, the password must be it too (else Twilio's 401).
 */
export async function startTwilioFake(o: { keep?: number; authToken?: string } = {}): Promise<TwilioFake> {
  const keep = o.keep ?? KEEP_RECENT;
  const messages = new Map<string, Message>();
  let price: string | null = null;
  let failure: { status: number; body: NonNullable<Parameters<TwilioFake['failNext']>[1]> } | undefined;

  const withPrice = (m: Message): Message => {
    if (price === null || m.status === 'failed') return m;
    const perSegment = Number(price);
    const total = (perSegment * Number(m.num_segments)).toFixed(5);
    return { ...m, price: total, status: 'delivered', date_sent: m.date_sent ?? m.date_created ?? null };
  };

  const handle = (req: TwilioFakeRequest, res: ServerResponse) => {
    if (failure) {
      const { status, body } = failure;
      failure = undefined;
      const extra = typeof body === 'function' ? body(req) : body;
      return send(res, status, twilioError(status, extra.code ?? 20500, 'Internal Server Error', extra));
    }
    const accountRoute = ACCOUNT.exec(req.path);
    const route = MESSAGES.exec(req.path);
    if (!route && !accountRoute)
      return send(res, 404, twilioError(404, 20404, 'The requested resource was not found'));
    const [, account = '', sid] = route ?? accountRoute ?? [];
    const auth = basicAuth(req.headers.authorization);
    if (auth.user !== account) {
      return send(res, 401, twilioError(401, 20003, 'Authentication Error - invalid username'));
    }
    if (o.authToken !== undefined && auth.password !== o.authToken) {
      return send(res, 401, twilioError(401, 20003, 'Authenticate'));
    }
    if (accountRoute) {
      return req.method === 'GET'
        ? send(res, 200, accountJson(account, auth.password))
        : send(res, 405, twilioError(405, 20004, 'Method not allowed'));
    }
    if (req.method === 'GET' && sid) {
      const m = messages.get(sid);
      return m
        ? send(res, 200, withPrice(m))
        : send(res, 404, twilioError(404, 20404, `Message ${sid} was not found`));
    }
    if (req.method === 'GET') {
      const list = [...messages.values()]
        .filter((m) => m.account_sid === account)
        .filter((m) => !req.form.To || m.to === req.form.To)
        .filter((m) => !req.form.From || m.from === req.form.From)
        .reverse()
        .map(withPrice);
      const uri = `/2010-04-01/Accounts/${account}/Messages.json`;
      return send(res, 200, {
        messages: list,
        uri,
        first_page_uri: uri,
        next_page_uri: null,
        previous_page_uri: null,
        page: 0,
        page_size: Number(req.form.PageSize ?? 50),
        start: 0,
        end: Math.max(list.length - 1, 0),
      });
    }
    if (req.method !== 'POST') return send(res, 405, twilioError(405, 20004, 'Method not allowed'));
    const { To: to, Body: body, From: from, MessagingServiceSid: service } = req.form;
    if (!to) return send(res, 400, twilioError(400, 21604, "A 'To' phone number is required."));
    if (!body) return send(res, 400, twilioError(400, 21602, 'Message body is required.'));
    if (!from && !service)
      return send(res, 400, twilioError(400, 21603, "A 'From' phone number is required."));
    const now = rfc2822(new Date());
    const newSid = `SM${hex(16)}`;
    const message: Message = {
      account_sid: account,
      api_version: '2010-04-01',
      body,
      date_created: now,
      date_updated: now,
      date_sent: null,
      direction: 'outbound-api',
      error_code: null,
      error_message: null,
      from: from ?? null,
      messaging_service_sid: service ?? null,
      num_media: '0',
      num_segments: String(countSegments(body).segments),
      price: null,
      price_unit: 'USD',
      sid: newSid,
      status: service ? 'accepted' : 'queued',
      subresource_uris: { media: `/2010-04-01/Accounts/${account}/Messages/${newSid}/Media.json` },
      to,
      uri: `/2010-04-01/Accounts/${account}/Messages/${newSid}.json`,
    };
    messages.set(newSid, message);
    trim(messages, keep);
    return send(res, 201, message);
  };

  // Every answer stalls delayMs before the message is made, so a client that gives up still sends it.
  const server = await startRecordingServer<TwilioFakeRequest>(
    async (req, res, self) => {
      await self.pause();
      handle(req, res);
    },
    {
      record,
      keep,
      faultBody: (status, message) => twilioError(status, status === 429 ? 20429 : 20500, message),
    },
  );
  return Object.assign(server, {
    messages,
    failNext: (status: number, body: Parameters<TwilioFake['failNext']>[1] = {}) => {
      failure = { status, body };
    },
    setPrice: (p: number | string | null) => {
      price = typeof p === 'number' ? `-${(p / 1e6).toFixed(5)}` : p;
    },
  });
}

/** The sandbox's account: a well-formed SID that no real Twilio account has. */
export const SANDBOX_ACCOUNT_SID = `AC${'0'.repeat(32)}`;
const SANDBOX_AUTH_TOKEN = 'sandbox';
const SANDBOX_SEGMENT_MICROS = 7900;

/** One fake per process for --sandbox; its messages are priced, so reconcile settles them. */
export const twilioSandbox = sharedSandbox(
  async () => {
    const fake = await startTwilioFake({ authToken: SANDBOX_AUTH_TOKEN });
    fake.setPrice(SANDBOX_SEGMENT_MICROS);
    return fake;
  },
  { account_sid: SANDBOX_ACCOUNT_SID, auth_token: SANDBOX_AUTH_TOKEN },
);
