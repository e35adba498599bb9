import type Stripe from 'stripe';
import type { VendorSpec } from '../../src/pipeline/tool.js';
import { stripeSandbox } from './sandbox.js';

/** The Stripe SDK client plus the connected account calls are routed to (Stripe-Account header). */
export interface StripeClient {
  stripe: Stripe;
  account: string | undefined;
}

/** The real Stripe SDK; a base URL (stripe-mock, a fake, the sandbox) becomes its host/port/protocol. */
export const stripeVendor: VendorSpec<StripeClient> = {
  name: 'stripe',
  secretFields: { secret_key: 'STRIPE_SECRET_KEY' },
  async createClient(credential, { timeoutMs }) {
    const { default: StripeSdk } = await import('stripe'); // loaded on first use: keeps startup fast
    const config: Stripe.StripeConfig = { timeout: timeoutMs, maxNetworkRetries: 0, telemetry: false };
    if (credential.baseUrl) {
      const url = new URL(credential.baseUrl);
      config.host = url.hostname;
      config.protocol = url.protocol === 'http:' ? 'http' : 'https';
      config.port = url.port || (url.protocol === 'http:' ? 80 : 443);
    }
    return { stripe: new StripeSdk(credential.secret.secret_key ?? '', config), account: credential.account };
  },
  sandbox: stripeSandbox,
};

/** Per-request options: idempotency key and account routing. */
export function requestOptions(client: StripeClient, idempotencyKey?: string): Stripe.RequestOptions {
  const o: Stripe.RequestOptions = {};
  if (idempotencyKey) o.idempotencyKey = idempotencyKey;
  if (client.account) o.stripeAccount = client.account;
  return o;
}
