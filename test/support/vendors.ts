// Starts all three fake vendors and the env that points leash (with canary keys) at them.
import { startResendFake, type ResendFake } from '../../tools/resend/sandbox.js';
import { startStripeFake, type StripeFake } from '../../tools/stripe/sandbox.js';
import { startTwilioFake, type TwilioFake } from '../../tools/twilio/sandbox.js';

export const CANARIES = {
  STRIPE_SECRET_KEY: 'sk_test_canaryStripe0a1b2c3d4e5f',
  TWILIO_ACCOUNT_SID: `AC${'c4'.repeat(16)}`,
  TWILIO_AUTH_TOKEN: 'ca7a1ed0'.repeat(4), // 32 hex digits, as Twilio's (config checks the shape)
  RESEND_API_KEY: 're_canaryResend_q1w2e3r4t5y6',
} as const;

export interface Vendors {
  stripe: StripeFake;
  twilio: TwilioFake;
  resend: ResendFake;
  env: Record<string, string>;
  requests(): number;
  reset(): void;
  close(): Promise<void>;
}

export async function startVendors(): Promise<Vendors> {
  const [stripe, twilio, resend] = await Promise.all([
    startStripeFake(false),
    startTwilioFake(),
    startResendFake(),
  ]);
  return {
    stripe,
    twilio,
    resend,
    env: {
      ...CANARIES,
      LEASH_STRIPE_BASE_URL: stripe.url,
      LEASH_TWILIO_BASE_URL: twilio.url,
      LEASH_RESEND_BASE_URL: resend.url,
    },
    requests: () => stripe.received.length + twilio.received.length + resend.received.length,
    reset() {
      stripe.received.length = 0;
      twilio.received.length = 0;
      resend.received.length = 0;
    },
    close: async () => {
      await Promise.all([stripe.close(), twilio.close(), resend.close()]);
    },
  };
}

/**
 * Holds every answer `fake` stalls (the ones its `pause()` delays; each sandbox says which) until the returned
 * function is called: a test waits on the event it needs (the answer is still held) instead of a guess of the time.
 */
export function holdAnswers(fake: { delayMs: number; pause(): Promise<void> }): () => void {
  const delayMs = fake.delayMs;
  const pause = fake.pause.bind(fake);
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  fake.delayMs = 1; // the fakes stall only when a delay is set
  fake.pause = () => released;
  return () => {
    fake.delayMs = delayMs;
    fake.pause = pause;
    release();
  };
}

/** True when no canary appears in the text. */
export function containsCanary(text: string): string | undefined {
  return Object.values(CANARIES).find((c) => text.includes(c));
}
