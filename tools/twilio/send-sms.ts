import type { MessageInstance } from 'twilio/lib/rest/api/v2010/account/message.js';
import { z } from 'zod';
import type { ToolRule } from '../../src/policy/compile.js';
import { formatUsd } from '../../src/policy/money.js';
import { defineTool, type Pricing, type Reconciled } from '../../src/pipeline/tool.js';
import type { TwilioClient } from './client.js';
import { countSegments, maxChars, segmentPriceMicros } from './segments.js';

const E164 = /^\+[1-9]\d{6,14}$/;
const SERVICE_SID = /^MG[0-9a-fA-F]{32}$/;
const MAX_BODY = 1600; // Twilio's own limit for one message

const toField = z
  .string()
  .regex(
    E164,
    'expected an E.164 phone number: "+", country code and number, no spaces, e.g. "+15551234567"',
  );
const bodyField = z.string().min(1, 'the message body is empty');

const input = z.strictObject({
  to: toField.describe('Recipient phone number in E.164 format, e.g. "+15551234567".'),
  body: bodyField.max(MAX_BODY).describe('The text to send.'),
});
type In = z.infer<typeof input>;

const output = z.object({
  sid: z.string(),
  status: z.string(),
  to: z.string(),
  from: z.string(),
  segments: z.number().int(),
  estimated_cost_usd: z.string(),
  cost_status: z.literal('pending'),
});
type Out = z.infer<typeof output>;

/** The sender, from the policy only: an E.164 number or a messaging service SID. */
function sender(from: string | undefined): { from: string } | { messagingServiceSid: string } | undefined {
  if (from && E164.test(from)) return { from };
  if (from && SERVICE_SID.test(from)) return { messagingServiceSid: from };
  return undefined;
}

function estimate(i: In, pricing: Pricing): number {
  return countSegments(i.body).segments * segmentPriceMicros(i.to, pricing.smsPriceMicros);
}

function recipientsSentence(rule: ToolRule): string | undefined {
  const prefixes = rule.toPrefixes ? `start with ${rule.toPrefixes.join(' or ')}` : undefined;
  const numbers = rule.toNumbers ? `be one of ${[...rule.toNumbers].join(', ')}` : undefined;
  const both = [prefixes, numbers].filter(Boolean).join(' or ');
  return both ? `Recipients must ${both}.` : undefined;
}

function narrow(rule: ToolRule) {
  const recipients = recipientsSentence(rule);
  const limits = recipients ? [recipients] : [];
  let body = bodyField.max(MAX_BODY);
  let bodyHelp = 'The text to send.';
  if (rule.maxSegments !== undefined) {
    const gsm = Math.min(MAX_BODY, maxChars(rule.maxSegments, 'GSM-7'));
    const ucs = Math.min(MAX_BODY, maxChars(rule.maxSegments, 'UCS-2'));
    body = bodyField.max(gsm);
    bodyHelp += ` At most ${rule.maxSegments} segment${rule.maxSegments > 1 ? 's' : ''}: ${gsm} plain (GSM-7) characters, or ${ucs} if it has emoji or other Unicode.`;
    limits.push(`At most ${rule.maxSegments} segment${rule.maxSegments > 1 ? 's' : ''}.`);
  }
  const from = sender(rule.from);
  if (from)
    limits.push(
      'from' in from ? `Sent from ${from.from}.` : `Sent from messaging service ${from.messagingServiceSid}.`,
    );
  return {
    input: z.strictObject({
      to: toField.describe(`Recipient phone number in E.164 format. ${recipients ?? ''}`.trim()),
      body: body.describe(bodyHelp),
    }),
    limits,
  };
}

/** A priced message settles at Twilio's price (negative, in `price_unit`); otherwise the estimate stays pending. */
function priced(m: MessageInstance, estimateMicros: number, fxRates: Pricing['fxRates']): Reconciled {
  const unit = (m.priceUnit || 'USD').toUpperCase();
  const rate = unit === 'USD' ? 1 : fxRates[unit];
  const price = m.price ? Math.abs(Number(m.price)) : Number.NaN;
  if (rate !== undefined && Number.isFinite(price)) {
    return {
      outcome: 'succeeded',
      costMicros: Math.round(price * rate * 1e6),
      costStatus: 'settled',
      vendorObjectId: m.sid,
    };
  }
  // Twilio does not charge for messages that failed to send, and never prices them.
  if (m.status === 'failed')
    return { outcome: 'succeeded', costMicros: 0, costStatus: 'settled', vendorObjectId: m.sid };
  return { outcome: 'succeeded', costMicros: estimateMicros, costStatus: 'pending', vendorObjectId: m.sid };
}

const CLOCK_SKEW_MS = 60_000;
const CALL_WINDOW_MS = 10 * 60_000;

/** Send one SMS from the policy's pinned sender. Cost is an estimate until Twilio prices it (reconcile). */
export const sendSms = defineTool<In, undefined, Out, TwilioClient>({
  name: 'send_sms',
  title: 'Send an SMS',
  description:
    'Send one text message with Twilio to a phone number in E.164 format. The sender is fixed by policy. ' +
    'Long or Unicode texts are billed per segment (160 GSM-7 or 70 Unicode characters in one, 153 or 67 per part).',
  vendor: 'twilio',
  operation: 'POST /2010-04-01/Accounts/{sid}/Messages.json',
  annotations: {
    title: 'Send an SMS',
    readOnlyHint: false,
    destructiveHint: false,
    idempotentHint: false,
    openWorldHint: true,
  },
  input,
  output,
  rules: ['from', 'to_prefixes', 'to_numbers', 'max_segments'],
  requires: ['from'],
  narrow,
  validateRule: (rule) =>
    rule.from === undefined || sender(rule.from)
      ? []
      : [`send_sms 'from' must be an E.164 number or a messaging service SID (MG…), got '${rule.from}'`],
  facts: (i) => ({ phones: [i.to], segments: countSegments(i.body).segments }),
  estimateCostMicros: (i, _looked, pricing) => estimate(i, pricing),
  redact: (i) => ({ to: i.to, body_length: i.body.length, segments: countSegments(i.body).segments }),

  async call(ctx, i) {
    const from = sender(ctx.rule.from);
    if (!from) throw new Error('send_sms called without a usable sender'); // validateRule refuses such policies when applied
    const cost = estimate(i, ctx.pricing);
    const res = await ctx.client.run((api) =>
      api.messages.createWithHttpInfo({ to: i.to, body: i.body, ...from }),
    );
    const m = res.body;
    const requestId = res.headers['twilio-request-id'];
    return {
      output: {
        sid: m.sid,
        status: m.status,
        to: m.to,
        from: m.from || ctx.rule.from || '',
        segments: Number(m.numSegments) || countSegments(i.body).segments,
        estimated_cost_usd: formatUsd(cost).slice(1),
        cost_status: 'pending',
      },
      costMicros: cost,
      costStatus: 'pending', // Twilio sets `price` only once the message is sent; reconcile settles it
      vendorObjectId: m.sid,
      httpStatus: res.statusCode,
      ...(requestId ? { vendorRequestId: requestId } : {}),
    };
  },

  async reconcile(ctx, row) {
    const { fxRates } = ctx.pricing;
    if (row.outcome === 'succeeded') {
      if (!row.vendorObjectId)
        return { outcome: 'succeeded', costMicros: row.costMicros, costStatus: 'pending' };
      const sid = row.vendorObjectId;
      return priced(await ctx.client.run((api) => api.messages(sid).fetch()), row.costMicros, fxRates);
    }
    // Twilio takes no idempotency key for messages, so a call whose answer was lost cannot be replayed
    // safely. Instead look for a message this call would have made: same recipient and sender, same body
    // length (the audit row keeps no text), created around the audit row's time. None found stays unknown,
    // holding the reservation, rather than guessing that nothing was sent.
    const to = row.request?.to;
    const bodyLength = row.request?.body_length;
    const from = sender(ctx.rule.from);
    if (typeof to !== 'string' || typeof bodyLength !== 'number' || !from) return { outcome: 'unknown' };
    const since = row.ts.getTime() - CLOCK_SKEW_MS;
    const recent = await ctx.client.run((api) =>
      api.messages.list({ to, ...('from' in from ? { from: from.from } : {}), limit: 50 }),
    );
    const match = recent
      .filter((m) =>
        'from' in from ? m.from === from.from : m.messagingServiceSid === from.messagingServiceSid,
      )
      .filter((m) => m.body.length === bodyLength)
      .filter((m) => m.dateCreated.getTime() >= since && m.dateCreated.getTime() <= since + CALL_WINDOW_MS)
      .sort((a, b) => a.dateCreated.getTime() - b.dateCreated.getTime())[0];
    return match ? priced(match, row.reservedMicros, fxRates) : { outcome: 'unknown' };
  },
});
