import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';

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

/** A local Stripe API subset (payment intents, charges, refunds) on a real HTTP server, recording what it got. */
export interface StripeFake {
  url: string;
  received: StripeFakeRequest[];
  payments: Map<string, FakePayment>;
  refunds: Map<
    string,
    { id: string; amount: number; payment_intent: string; charge: string; params: string }
  >;
  addPayment(p: Partial<FakePayment> & { amount: number }): FakePayment;
  /** Answer the next request (to `path`, when given) with this status and a Stripe-shaped error body. */
  failNext(status: number, error: Record<string, unknown>, path?: string): void;
  /** Lets the process exit while the server is still open. */
  unref(): void;
  /** Stall every POST answer by this many ms (the effect still happens; reads are not stalled). */
  delayMs: number;
  close(): Promise<void>;
}

const rid = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': rid('req') });
  res.end(JSON.stringify(body));
}

const missing = (id: string) => ({
  error: {
    type: 'invalid_request_error',
    code: 'resource_missing',
    message: `No such object: '${id}'`,
    param: 'id',
  },
});

export async function startStripeFake(seed = true): Promise<StripeFake> {
  const payments = new Map<string, FakePayment>();
  const byCharge = new Map<string, FakePayment>();
  const refunds: StripeFake['refunds'] = new Map();
  const received: StripeFakeRequest[] = [];
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

  const fake: StripeFake = {
    url: '',
    received,
    payments,
    refunds,
    delayMs: 0,
    addPayment(p) {
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
    failNext(status, error, path) {
      pendingFailure = { status, error, path };
    },
    unref: () => server.unref(),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const form = new URLSearchParams(
        req.method === 'GET' ? url.search : Buffer.concat(chunks).toString('utf8'),
      );
      received.push({ method: req.method ?? 'GET', path: url.pathname, headers: req.headers, form });
      const answer = () => handle(req.method ?? 'GET', url.pathname, form, req.headers, res);
      if (fake.delayMs && req.method === 'POST') setTimeout(answer, fake.delayMs);
      else answer();
    });
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
    if (!/^Bearer \S+/.test(headers.authorization ?? '')) {
      return send(res, 401, {
        error: { type: 'invalid_request_error', message: 'You did not provide an API key.' },
      });
    }
    const [, v1, kind, id] = path.split('/');
    if (v1 !== 'v1') return send(res, 404, missing(path));
    if (method === 'GET' && kind === 'payment_intents' && id) {
      const p = payments.get(id);
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
    if (method === 'POST' && kind === 'refunds' && !id) {
      const key = String(headers['idempotency-key'] ?? '');
      const params = [...form.entries()]
        .sort()
        .map(([k, v]) => `${k}=${v}`)
        .join('&');
      const seen = key ? refunds.get(key) : undefined;
      if (seen) {
        if (seen.params !== params) {
          return send(res, 400, {
            error: {
              type: 'idempotency_error',
              message:
                'Keys for idempotent requests can only be used with the same parameters they were first used with.',
            },
          });
        }
        return send(res, 200, refundJson(seen));
      }
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

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  fake.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
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

let shared: Promise<StripeFake> | undefined;

/** --sandbox: one local Stripe per process, seeded with demo payments (pi_sandbox_alice, pi_sandbox_bob, pi_sandbox_eve). */
export async function stripeSandbox(): Promise<{ baseUrl: string; secret: Record<string, string> }> {
  // The sandbox must not keep a stopping server process alive.
  shared ??= startStripeFake(true).then((f) => {
    f.unref();
    return f;
  });
  return { baseUrl: (await shared).url, secret: { secret_key: 'sk_test_sandbox' } };
}
