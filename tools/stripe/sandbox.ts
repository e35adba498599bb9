import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import {
  KEEP_RECENT,
  sharedSandbox,
  startRecordingServer,
  trim,
  type Received,
  type RecordingServer,
} from '../../src/vendor-kit/fake-server.js';

/** A payment the fake knows: a PaymentIntent with one charge. */
export interface FakePayment {
  payment_intent: string;
  charge: string;
  customer: string | null;
  currency: string;
  amount: number;
  amount_refunded: number;
}

export interface StripeFakeRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  form: URLSearchParams;
}

/** A PaymentIntent made by `POST /v1/payment_intents` (Stripe's shape; no charge until it is captured). */
export interface FakeIntent {
  id: string;
  object: 'payment_intent';
  amount: number;
  amount_capturable: number;
  amount_received: number;
  capture_method: string;
  currency: string;
  customer: string | null;
  latest_charge: null;
  status: 'requires_capture' | 'requires_payment_method';
  created: number;
  livemode: false;
}

/** A local Stripe API subset (payment intents, charges, refunds) on a real HTTP server, recording what it got. */
export interface StripeFake extends RecordingServer<StripeFakeRequest> {
  payments: Map<string, FakePayment>;
  refunds: Map<
    string,
    { id: string; amount: number; payment_intent: string; charge: string; params: string }
  >;
  /** Created PaymentIntents, by idempotency key (or id when none was sent), each with the params that made it. */
  intents: Map<string, { intent: FakeIntent; params: string }>;
  addPayment(p: Partial<FakePayment> & { amount: number }): FakePayment;
  /** Answer the next request (to `path`, when given) with this status and a Stripe-shaped error body. */
  failNext(status: number, error: Record<string, unknown>, path?: string): void;
}

const rid = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': rid('req'), ...headers });
  res.end(JSON.stringify(body));
}

/** Stripe answers a request whose idempotency key it has seen with the first answer, marked as a replay. */
const replayed = (res: ServerResponse, body: unknown) =>
  send(res, 200, body, { 'idempotent-replayed': 'true' });

/** Stripe's answer while another request with the same idempotency key is still being processed. */
const keyInUse = (key: string) => ({
  error: {
    type: 'invalid_request_error',
    code: 'idempotency_key_in_use',
    message: `There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): ${key}. Please try again later.`,
  },
});

const idempotencyMismatch = (res: ServerResponse) =>
  send(res, 400, {
    error: {
      type: 'idempotency_error',
      message:
        'Keys for idempotent requests can only be used with the same parameters they were first used with.',
    },
  });

const badParam = (param: string) => ({
  error: {
    type: 'invalid_request_error',
    code: 'parameter_missing',
    param,
    message: `Missing required param: ${param}.`,
  },
});

const missing = (id: string) => ({
  error: {
    type: 'invalid_request_error',
    code: 'resource_missing',
    message: `No such object: '${id}'`,
    param: 'id',
  },
});

/** A request with its form (POST body, or GET query) parsed. */
function record(r: Received): StripeFakeRequest {
  const form = new URLSearchParams(r.method === 'GET' ? r.query : r.body);
  return { method: r.method, path: r.path, headers: r.headers, form };
}

/** Stripe's answer to a key it does not know: 401 with the key masked to its last four characters. */
const invalidKey = (key: string) => ({
  error: {
    type: 'invalid_request_error',
    message: `Invalid API Key provided: ${key.slice(0, key.indexOf('_', 3) + 1)}${'*'.repeat(Math.max(key.length - 12, 4))}${key.slice(-4)}`,
  },
});

/**
 * Starts a fake Stripe on 127.0.0.1, port 0, keeping the newest `keep` requests and refunds (payments all).
 * With `secretKey`, any other bearer key gets Stripe's 401 (without it, any key is accepted).
 */
export async function startStripeFake(
  seed = true,
  o: { keep?: number; secretKey?: string } = {},
): Promise<StripeFake> {
  const keep = o.keep ?? KEEP_RECENT;
  const payments = new Map<string, FakePayment>();
  const byCharge = new Map<string, FakePayment>();
  const refunds: StripeFake['refunds'] = new Map();
  const intents: StripeFake['intents'] = new Map();
  let pendingFailure:
    { status: number; error: Record<string, unknown>; path: string | undefined } | undefined;

  const chargeJson = (p: FakePayment) => ({
    id: p.charge,
    object: 'charge',
    amount: p.amount,
    amount_captured: p.amount,
    amount_refunded: p.amount_refunded,
    captured: true,
    currency: p.currency,
    customer: p.customer,
    payment_intent: p.payment_intent,
    refunded: p.amount_refunded >= p.amount,
    status: 'succeeded',
    livemode: false,
  });
  const intentJson = (p: FakePayment, expand: boolean) => ({
    id: p.payment_intent,
    object: 'payment_intent',
    amount: p.amount,
    amount_received: p.amount,
    currency: p.currency,
    customer: p.customer,
    latest_charge: expand ? chargeJson(p) : p.charge,
    status: 'succeeded',
    livemode: false,
  });

  // Idempotency keys of POSTs being processed: a second request with one gets 409 idempotency_key_in_use.
  const inProgress = new Set<string>();
  // POST answers stall delayMs before the refund is made (reads are not stalled): a client that gives up still refunds.
  const server = await startRecordingServer<StripeFakeRequest>(
    async (req, res, self) => {
      if (req.method !== 'POST') return handle(req.method, req.path, req.form, req.headers, res);
      const key = String(req.headers['idempotency-key'] ?? '');
      if (key && inProgress.has(key)) return send(res, 409, keyInUse(key));
      if (key) inProgress.add(key);
      try {
        await self.pause();
        handle(req.method, req.path, req.form, req.headers, res);
      } finally {
        if (key) inProgress.delete(key);
      }
    },
    {
      record,
      keep,
      faultBody: (status, message) => ({
        error: { type: status === 429 ? 'rate_limit_error' : 'api_error', message },
      }),
    },
  );
  const fake: StripeFake = Object.assign(server, {
    payments,
    refunds,
    intents,
    addPayment(p: Partial<FakePayment> & { amount: number }) {
      const full: FakePayment = {
        payment_intent: p.payment_intent ?? rid('pi'),
        charge: p.charge ?? rid('ch'),
        customer: p.customer ?? null,
        currency: p.currency ?? 'usd',
        amount: p.amount,
        amount_refunded: p.amount_refunded ?? 0,
      };
      payments.set(full.payment_intent, full);
      byCharge.set(full.charge, full);
      return full;
    },
    failNext(status: number, error: Record<string, unknown>, path?: string) {
      pendingFailure = { status, error, path };
    },
  });

  function handle(
    method: string,
    path: string,
    form: URLSearchParams,
    headers: IncomingHttpHeaders,
    res: ServerResponse,
  ) {
    if (pendingFailure && (!pendingFailure.path || pendingFailure.path === path)) {
      const f = pendingFailure;
      pendingFailure = undefined;
      return send(res, f.status, { error: f.error });
    }
    const bearer = /^Bearer (\S+)/.exec(headers.authorization ?? '')?.[1];
    if (!bearer) {
      return send(res, 401, {
        error: { type: 'invalid_request_error', message: 'You did not provide an API key.' },
      });
    }
    if (o.secretKey !== undefined && bearer !== o.secretKey) return send(res, 401, invalidKey(bearer));
    const [, v1, kind, id] = path.split('/');
    if (v1 !== 'v1') return send(res, 404, missing(path));
    if (method === 'GET' && kind === 'payment_intents' && id) {
      const p = payments.get(id);
      const made = p ? undefined : [...intents.values()].find((i) => i.intent.id === id);
      if (made) return send(res, 200, made.intent);
      return p
        ? send(
            res,
            200,
            intentJson(
              p,
              form.getAll('expand[]').includes('latest_charge') ||
                form.getAll('expand[0]').includes('latest_charge'),
            ),
          )
        : send(res, 404, missing(id));
    }
    if (method === 'GET' && kind === 'charges' && id) {
      const p = byCharge.get(id);
      return p ? send(res, 200, chargeJson(p)) : send(res, 404, missing(id));
    }
    const key = String(headers['idempotency-key'] ?? '');
    const params = [...form.entries()]
      .sort()
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    if (method === 'POST' && kind === 'payment_intents' && !id) {
      const seen = key ? intents.get(key) : undefined;
      if (seen) return seen.params === params ? replayed(res, seen.intent) : idempotencyMismatch(res);
      const amount = Number(form.get('amount'));
      const cur = form.get('currency');
      if (!Number.isInteger(amount) || amount < 1) return send(res, 400, badParam('amount'));
      if (!cur) return send(res, 400, badParam('currency'));
      const manual = form.get('capture_method') === 'manual';
      const intent: FakeIntent = {
        id: rid('pi'),
        object: 'payment_intent',
        amount,
        amount_capturable: manual ? amount : 0,
        amount_received: 0,
        capture_method: form.get('capture_method') ?? 'automatic_async',
        currency: cur.toLowerCase(),
        customer: form.get('customer'),
        latest_charge: null,
        // Kept simple: a manual-capture intent is taken as authorised and waiting to be captured.
        status: manual ? 'requires_capture' : 'requires_payment_method',
        created: Math.floor(Date.now() / 1000),
        livemode: false,
      };
      intents.set(key || intent.id, { intent, params });
      trim(intents, keep);
      return send(res, 200, intent);
    }
    if (method === 'POST' && kind === 'refunds' && !id) {
      const seen = key ? refunds.get(key) : undefined;
      if (seen) return seen.params === params ? replayed(res, refundJson(seen)) : idempotencyMismatch(res);
      const piId = form.get('payment_intent');
      const chId = form.get('charge');
      const p = piId ? payments.get(piId) : chId ? byCharge.get(chId) : undefined;
      if (!p) return send(res, 404, missing(piId ?? chId ?? '(none)'));
      const refundable = p.amount - p.amount_refunded;
      const amount = form.has('amount') ? Number(form.get('amount')) : refundable;
      if (refundable <= 0) {
        return send(res, 400, {
          error: {
            type: 'invalid_request_error',
            code: 'charge_already_refunded',
            message: `Charge ${p.charge} has already been refunded.`,
          },
        });
      }
      if (!Number.isInteger(amount) || amount <= 0 || amount > refundable) {
        return send(res, 400, {
          error: {
            type: 'invalid_request_error',
            code: 'amount_too_large',
            param: 'amount',
            message: `Refund amount (${amount}) is greater than unrefunded amount on charge (${refundable})`,
          },
        });
      }
      p.amount_refunded += amount;
      const refund = {
        id: rid('re'),
        amount,
        payment_intent: p.payment_intent,
        charge: p.charge,
        params,
        currency: p.currency,
        reason: form.get('reason'),
      };
      refunds.set(key || refund.id, refund);
      trim(refunds, keep);
      return send(res, 200, refundJson(refund));
    }
    return send(res, 404, missing(path));
  }

  function refundJson(r: { id: string; amount: number; payment_intent: string; charge: string }) {
    const p = payments.get(r.payment_intent);
    return {
      id: r.id,
      object: 'refund',
      amount: r.amount,
      charge: r.charge,
      payment_intent: r.payment_intent,
      currency: p?.currency ?? 'usd',
      status: 'succeeded',
      created: Math.floor(Date.now() / 1000),
    };
  }

  if (seed) {
    fake.addPayment({
      payment_intent: 'pi_sandbox_alice',
      charge: 'ch_sandbox_alice',
      customer: 'cus_sandbox_alice',
      amount: 4200,
    });
    fake.addPayment({
      payment_intent: 'pi_sandbox_bob',
      charge: 'ch_sandbox_bob',
      customer: 'cus_sandbox_bob',
      amount: 15000,
    });
    fake.addPayment({
      payment_intent: 'pi_sandbox_eve',
      charge: 'ch_sandbox_eve',
      customer: 'cus_sandbox_eve',
      amount: 9900,
    });
  }
  return fake;
}

/** --sandbox: one local Stripe per process, seeded with demo payments (pi_sandbox_alice, pi_sandbox_bob, pi_sandbox_eve). */
const SANDBOX_KEY = 'sk_test_sandbox';
export const stripeSandbox = sharedSandbox(() => startStripeFake(true, { secretKey: SANDBOX_KEY }), {
  secret_key: SANDBOX_KEY,
});
