import type Stripe from 'stripe';
import { VendorError } from '../../src/pipeline/errors.js';
import { guardClient, type GuardedClient } from '../../src/vendor-kit/client-guard.js';
import { createForwarder, type Forwarder } from '../../src/vendor-kit/forward.js';
import type { VendorSpec } from '../../src/pipeline/vendor-spec.js';
import { stripeError } from './errors.js';
import { STRIPE_RESPONSE_HEADERS } from './http-shape.js';
import { stripeSandbox } from './sandbox.js';

/** The Stripe SDK behind the client guard, plus the connected account calls are routed to (Stripe-Account header). */
export interface StripeClient extends GuardedClient<Stripe> {
  account: string | undefined;
  /** The REST front door's raw pass-through, with this credential (see http.ts). */
  forward: Forwarder;
}

/** The real Stripe SDK; a base URL (stripe-mock, a fake, the sandbox) becomes its host/port/protocol. */
export const stripeVendor: VendorSpec<StripeClient> = {
  name: 'stripe',
  env: {
    baseUrl: 'LEASH_STRIPE_BASE_URL',
    secrets: { secret_key: 'STRIPE_SECRET_KEY' },
    shapes: {
      secret_key: {
        pattern: /^(?:sk|rk)_(?:test|live)_\w+$/,
        expected: 'a restricted key (rk_live_…, rk_test_…) or a secret key (sk_live_…, sk_test_…)',
        mistakes: [{ pattern: /^pk_/, hint: 'a publishable key (pk_…), which cannot refund' }],
        warn: (key) =>
          key.startsWith('sk_')
            ? 'a full secret key (sk_…) can do anything in the account; a restricted key (rk_…) allowing only ' +
              'what your policies use (e.g. Refunds write; PaymentIntents, Charges, Customers read) limits a leak'
            : undefined,
      },
    },
  },
  async createClient(credential, { timeoutMs }) {
    const { default: StripeSdk } = await import('stripe'); // loaded on first use: keeps startup fast
    const config: Stripe.StripeConfig = { timeout: timeoutMs, maxNetworkRetries: 0, telemetry: false };
    if (credential.baseUrl) {
      const url = new URL(credential.baseUrl);
      config.host = url.hostname;
      config.protocol = url.protocol === 'http:' ? 'http' : 'https';
      config.port = url.port || (url.protocol === 'http:' ? 80 : 443);
    }
    const key = credential.secret.secret_key ?? '';
    const guarded = guardClient(new StripeSdk(key, config), {
      vendor: 'stripe',
      map: stripeError,
      secrets: [key],
      timeoutMs,
    });
    const forward = createForwarder({
      vendor: 'stripe',
      baseUrl: credential.baseUrl ?? 'https://api.stripe.com',
      auth: {
        authorization: `Bearer ${key}`,
        ...(credential.account ? { 'stripe-account': credential.account } : {}),
      },
      secrets: [key],
      keepHeaders: STRIPE_RESPONSE_HEADERS,
      timeoutMs,
    });
    return { run: (call) => guarded.run(call), account: credential.account, forward };
  },
  sandbox: stripeSandbox,
  async check(client) {
    // A PaymentIntent that cannot exist: Stripe authenticates the key before it looks the id up, so "no such
    // object" proves the key works while reading nothing. A bad key fails as VendorError kind 'auth' (HTTP 401).
    try {
      await client.run((stripe) =>
        stripe.paymentIntents.retrieve(CHECK_PAYMENT_INTENT, {}, requestOptions(client)),
      );
    } catch (error) {
      if (error instanceof VendorError && error.vendorCode === 'resource_missing')
        return `authenticated${client.account ? ' (connected account)' : ''}`;
      throw error;
    }
    return 'authenticated';
  },
};

/** The id `check` reads: well-formed, but no PaymentIntent has it. */
export const CHECK_PAYMENT_INTENT = 'pi_leash_credential_check';

/** Per-request options: idempotency key and account routing. */
export function requestOptions(
  client: Pick<StripeClient, 'account'>,
  idempotencyKey?: string,
): Stripe.RequestOptions {
  const o: Stripe.RequestOptions = {};
  if (idempotencyKey) o.idempotencyKey = idempotencyKey;
  if (client.account) o.stripeAccount = client.account;
  return o;
}
