import type { MessageInstance } from 'twilio/lib/rest/api/v2010/account/message.js';
import { z } from 'zod';
import type { ToolRule } from '../../src/policy/compile.js';
import { formatUsd } from '../../src/policy/money.js';
import { VendorError } from '../../src/pipeline/errors.js';
import { defineTool, type Pricing, type Reconciled } from '../../src/pipeline/tool.js';
import { smsPrices, type TwilioClient } from './client.js';
import { E164, sender, smsRules, type SmsFacts } from './rules.js';
import { countSegments, maxChars, segmentPriceMicros } from './segments.js';
const MAX_BODY = 1600; // Twilio's own limit for one message (error 21617), counted as bodyLength() does
// The GSM 03.38 extension table (as in segments.ts): each character is sent as two septets.
const GSM_EXTENSION = /[\f^{}\\[~\]|€]/g;

/** A body's length as Twilio counts it against 1600: GSM-7 septets (extension characters two), else UTF-16 units. */
export function bodyLength(body: string): number {
  if (countSegments(body).encoding === 'UCS-2') return body.length;
  return body.length + (body.match(GSM_EXTENSION)?.length ?? 0);
}

const toField = z
  .string()
  .regex(
    E164,
    'expected an E.164 phone number: "+", country code and number, no spaces, e.g. "+15551234567"',
  );
const tooLong = `expected at most ${MAX_BODY} characters as Twilio counts them (€ { } [ ] ~ ^ | \\ and emoji count as two)`;
const bodyField = z.string().min(1, 'the message body is empty');
// abort: a megabyte body stops at the cheap length check, before segments are counted.
const boundedBody = (max: number) =>
  bodyField.max(max, { abort: true, error: tooLong }).refine((b) => bodyLength(b) <= MAX_BODY, tooLong);

const input = z.strictObject({
  to: toField.describe('Recipient phone number in E.164 format, e.g. "+15551234567".'),
  body: boundedBody(MAX_BODY).describe('The text to send.'),
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

function estimate(i: In, pricing: Pricing): number {
  return countSegments(i.body).segments * segmentPriceMicros(i.to, smsPrices.read(pricing.prices));
}

function recipientsSentence(ruleOf: ToolRule): string | undefined {
  const rule = smsRules.of(ruleOf);
  const prefixes = rule.toPrefixes ? `start with ${rule.toPrefixes.join(' or ')}` : undefined;
  const numbers = rule.toNumbers ? `be one of ${[...rule.toNumbers].join(', ')}` : undefined;
  const both = [prefixes, numbers].filter(Boolean).join(' or ');
  return both ? `Recipients must ${both}.` : undefined;
}

function narrow(ruleOf: ToolRule) {
  const rule = smsRules.of(ruleOf);
  const recipients = recipientsSentence(ruleOf);
  const limits = recipients ? [recipients] : [];
  let body = boundedBody(MAX_BODY);
  let bodyHelp = 'The text to send.';
  if (rule.maxSegments !== undefined) {
    const gsm = Math.min(MAX_BODY, maxChars(rule.maxSegments, 'GSM-7'));
    const ucs = Math.min(MAX_BODY, maxChars(rule.maxSegments, 'UCS-2'));
    body = boundedBody(gsm);
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
  rules: [],
  ownRules: smsRules,
  narrow,
  facts: (i): SmsFacts => ({ phones: [i.to], recipients: [i.to], segments: countSegments(i.body).segments }),
  estimateCostMicros: (i, _looked, pricing) => estimate(i, pricing),
  sensitive: ['body'],
  // The body's HMAC under the audit key, so reconcile can recognise the message without its text being kept or
  // brute-forceable (a one-time code) from the audit table.
  redact: (i, h) => ({
    to: i.to,
    body_length: i.body.length,
    body_sha256: h.hash(i.body),
    segments: countSegments(i.body).segments,
  }),

  async call(ctx, i) {
    const pinned = smsRules.of(ctx.rule).from;
    const from = sender(pinned);
    if (!from) throw new Error('send_sms called without a usable sender'); // smsRules refuse such policies when applied
    const cost = estimate(i, ctx.pricing);
    const res = await ctx.client.run((api) =>
      api.messages.createWithHttpInfo({ to: i.to, body: i.body, ...from }),
    );
    const m = res.body;
    const requestId = res.headers['twilio-request-id'];
    // Twilio answered, but without the message's SID leash cannot settle it or find it again.
    if (typeof m.sid !== 'string' || !m.sid)
      throw new VendorError({
        vendor: 'twilio',
        kind: 'unreadable',
        status: res.statusCode,
        requestId,
        message: 'Twilio answered without the message leash asked for',
      });
    return {
      output: {
        sid: m.sid,
        status: m.status,
        to: m.to,
        from: m.from || pinned || '',
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
    // safely. Instead look for the message this call would have made: same recipient and sender, same body
    // (by hash: the audit row keeps no text), created around the audit row's time, and not already another
    // row's. None found stays unknown, holding the reservation, rather than guessing that nothing was sent;
    // more than one stays unknown too, for an operator, rather than guessing which.
    const to = row.request?.to;
    const bodyHash = row.request?.body_sha256;
    const from = sender(smsRules.of(ctx.rule).from);
    if (typeof to !== 'string' || !from) return { outcome: 'unknown' };
    if (typeof bodyHash !== 'string')
      return { outcome: 'unknown', note: 'admitted before leash kept body hashes; settle it by hand' };
    const since = row.ts.getTime() - CLOCK_SKEW_MS;
    const recent = await ctx.client.run((api) =>
      api.messages.list({ to, ...('from' in from ? { from: from.from } : {}), limit: 50 }),
    );
    const matches = recent
      .filter((m) =>
        'from' in from ? m.from === from.from : m.messagingServiceSid === from.messagingServiceSid,
      )
      .filter((m) => m.dateCreated.getTime() >= since && m.dateCreated.getTime() <= since + CALL_WINDOW_MS)
      .filter((m) => typeof m.body === 'string' && ctx.auditHash.hash(m.body) === bodyHash);
    const owned = await ctx.attributed(matches.map((m) => m.sid));
    const free = matches.filter((m) => !owned.has(m.sid));
    const [match] = free;
    if (match && free.length === 1) return priced(match, row.reservedMicros, fxRates);
    if (free.length > 1)
      return {
        outcome: 'unknown',
        note: `${free.length} messages match (${free.map((m) => m.sid).join(', ')}); settle it by hand`,
      };
    return matches.length
      ? { outcome: 'unknown', note: 'every matching message already belongs to another audit row' }
      : { outcome: 'unknown' };
  },
});
