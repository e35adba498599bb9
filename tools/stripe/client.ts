import type Stripe from 'stripe';
import { guardClient, type GuardedClient } from '../../src/vendor-kit/client-guard.js';
import type { VendorSpec } from '../../src/vendor-kit/vendor-spec.js';
import { stripeError } from './errors.js';
import { stripeSandbox } from './sandbox.js';

/** The Stripe SDK behind the client guard, plus the connected account calls are routed to (Stripe-Account header). */
export interface StripeClient extends GuardedClient<Stripe> {
  account: string | undefined;
}

/** The real Stripe SDK; a base URL (stripe-mock, a fake, the sandbox) becomes its host/port/protocol. */
export const stripeVendor: VendorSpec<StripeClient> = {
  name: 'stripe',
  env: { baseUrl: 'LEASH_STRIPE_BASE_URL', secrets: { secret_key: 'STRIPE_SECRET_KEY' } },
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
    return { run: (call) => guarded.run(call), account: credential.account };
  },
  sandbox: stripeSandbox,
};

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
