// A governed test tool ("charge_test") against a fake HTTP vendor, proving the pipeline without a real vendor.
import { z } from 'zod';
import { VendorError } from '../../src/pipeline/errors.js';
import { defineTool, type Catalog, type VendorSpec } from '../../src/pipeline/tool.js';
import { sendJson, startRecordingServer, type RecordingServer } from '../../src/vendor-kit/fake-server.js';

export interface FakeVendor extends RecordingServer {
  /** Effects actually performed (one per idempotency key). */
  effects: Map<string, { id: string; amount: number }>;
  /** Status to answer with instead of success, once set. */
  failWith: number | undefined;
}

export async function startFakeVendor(): Promise<FakeVendor> {
  const effects = new Map<string, { id: string; amount: number }>();
  const ref: { fake?: FakeVendor } = {};
  const server = await startRecordingServer(async (req, res, self) => {
    if (self.delayMs) await self.pause();
    if (ref.fake?.failWith)
      return sendJson(res, ref.fake.failWith, {
        error: { message: `fake refused; auth was ${req.headers.authorization ?? ''}` },
      });
    const body = JSON.parse(req.body || '{}') as { amount: number };
    const idem = String(req.headers['idempotency-key'] ?? '');
    let effect = effects.get(idem);
    if (!effect) {
      effect = { id: `eff_${effects.size + 1}`, amount: body.amount };
      effects.set(idem, effect);
    }
    sendJson(res, 200, effect, { 'request-id': `req_${server.received.length}` });
  });
  ref.fake = Object.assign(server, { effects, failWith: undefined });
  return ref.fake;
}

interface Client {
  baseUrl: string;
  token: string;
  timeoutMs: number;
}

async function post(
  c: Client,
  path: string,
  body: unknown,
  idem: string,
): Promise<{ id: string; amount: number; requestId: string | undefined }> {
  let res: Response;
  try {
    res = await fetch(c.baseUrl + path, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${c.token}`,
        'content-type': 'application/json',
        'idempotency-key': idem,
      },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(c.timeoutMs),
    });
  } catch (error) {
    const timeout = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
    throw new VendorError({
      vendor: 'testvendor',
      kind: timeout ? 'timeout' : 'unavailable',
      message: timeout ? 'timed out' : 'unreachable',
      definite: false,
    });
  }
  const json = (await res.json()) as { id: string; amount: number; error?: { message: string } };
  if (!res.ok)
    throw new VendorError({
      vendor: 'testvendor',
      kind: res.status >= 500 ? 'unavailable' : 'rejected',
      status: res.status,
      message: json.error?.message ?? 'error',
    });
  return { id: json.id, amount: json.amount, requestId: res.headers.get('request-id') ?? undefined };
}

export function testVendor(fake: { url: string }): VendorSpec<Client> {
  return {
    name: 'testvendor',
    env: { baseUrl: 'LEASH_TESTVENDOR_BASE_URL', secrets: { token: 'TESTVENDOR_TOKEN' } },
    createClient: (cred, { timeoutMs }) => ({
      baseUrl: cred.baseUrl ?? fake.url,
      token: cred.secret.token ?? '',
      timeoutMs,
    }),
    sandbox: () => Promise.resolve({ baseUrl: fake.url, secret: { token: 'sandbox' } }),
  };
}

const input = z.strictObject({
  amount_cents: z.number().int().positive().describe('amount in cents'),
  currency: z.string().length(3).default('usd'),
  customer: z.string().min(1),
});
type In = z.infer<typeof input>;

export const chargeTest = defineTool<In, undefined, { id: string; amount: number }, Client>({
  name: 'charge_test',
  title: 'Charge (test)',
  description: 'Moves money at the fake vendor.',
  vendor: 'testvendor',
  operation: 'POST /effects',
  annotations: { destructiveHint: true, idempotentHint: false, openWorldHint: true, readOnlyHint: false },
  input,
  output: z.object({ id: z.string(), amount: z.number() }),
  rules: ['max_amount_usd', 'customers'],
  facts: (i) => ({ amount: { minor: i.amount_cents, currency: i.currency }, customer: i.customer }),
  estimateCostMicros: (_i, _l, _p, usd) => usd ?? 0,
  async call(ctx, i) {
    const r = await post(ctx.client, '/effects', { amount: i.amount_cents }, ctx.idempotencyKey);
    return {
      output: { id: r.id, amount: r.amount },
      costMicros: i.amount_cents * 10_000,
      costStatus: 'settled',
      vendorObjectId: r.id,
      ...(r.requestId ? { vendorRequestId: r.requestId } : {}),
      amount: { minor: r.amount, currency: i.currency },
    };
  },
  async reconcile(ctx, row) {
    const amount = Number((row.request ?? {}).amount_cents);
    const r = await post(ctx.client, '/effects', { amount }, row.idempotencyKey);
    return { outcome: 'succeeded', costMicros: amount * 10_000, costStatus: 'settled', vendorObjectId: r.id };
  },
});

export function testCatalog(fake: { url: string }): Catalog {
  return {
    tools: new Map([[chargeTest.name, chargeTest]]),
    vendors: new Map([['testvendor', testVendor(fake)]]),
  };
}
