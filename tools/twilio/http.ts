// Twilio's own REST API as leash's second front door: Messages create (send_sms's rules: pinned sender,
// to_prefixes/to_numbers, max_segments) and read, forwarded to the real account with the server-held token.
import { z } from 'zod';
import type { ToolRules } from '../../src/policy/rule-set.js';
import type { CallContext } from '../../src/pipeline/tool.js';
import type { ForwardedResponse } from '../../src/vendor-kit/forward.js';
import {
  defineEndpoint,
  encodeForm,
  formOf,
  forwardedEffect,
  jsonObject,
  type FlatForm,
  type RestRequest,
  type VendorApi,
} from '../../src/vendor-kit/rest-api.js';
import { smsPrices, type TwilioClient } from './client.js';
import { twilioPresentedKey, twilioRefusal } from './http-shape.js';
import { E164, sender, smsRules, type SmsFacts } from './rules.js';
import { countSegments, segmentPriceMicros } from './segments.js';
import { sendSms } from './send-sms.js';

const REQUEST_ID = 'twilio-request-id';
const MESSAGES = '/2010-04-01/Accounts/{AccountSid}/Messages.json';
const MESSAGE = '/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json';
/** Any `AC…` value: the real account comes from the credential. */
const params = z.looseObject({
  AccountSid: z.string().regex(/^AC[0-9a-zA-Z]{1,64}$/, 'expected an account SID like "AC…"'),
}) as z.ZodType<Record<string, string>>; // path parameters are strings, so the loose object's rest is too

/** Sends to the account the credential routes to; the caller's `AC…` (any value) is given back in the answer. */
function send(
  ctx: CallContext<TwilioClient>,
  method: string,
  template: string,
  req: RestRequest<unknown>,
  form?: FlatForm,
): Promise<ForwardedResponse> {
  const real = ctx.client.accountSid;
  const path = template
    .replace('{AccountSid}', real)
    .replace('{Sid}', encodeURIComponent(req.params.Sid ?? ''));
  return ctx.client.forward({
    method,
    path,
    query: new URLSearchParams(encodeForm(req.query)),
    ...(form
      ? { body: encodeForm(form), headers: { 'content-type': 'application/x-www-form-urlencoded' } }
      : {}),
    replace: [[real, req.params.AccountSid ?? real]],
  });
}

const messageBody = z.looseObject({
  To: z.string().regex(E164, 'expected an E.164 phone number, e.g. "+15551234567"'),
  // Segments (and so cost and max_segments) are counted from Body: a message without one (a Content template) is refused.
  Body: z.string().min(1, 'the message body is empty').max(1600, 'expected at most 1600 characters'),
  From: z.string().optional(),
  MessagingServiceSid: z.string().optional(),
  // Read only to refuse media (priced apart); a field here so `MediaUrl[0]` is refused as another form of it.
  MediaUrl: z.union([z.string(), z.array(z.string())]).optional(),
});
type MessageBody = z.infer<typeof messageBody>;
/**
 * Message-create parameters forwarded unread, from Twilio's API reference (twilio-oai `twilio_api_v2010.json`). Not
 * forwarded: `FallbackFrom` (a sender the pinned-sender rule does not read), `ContentSid` and `ContentVariables` (a
 * template's text replaces the Body that segments and cost are counted from), `SendAsMms` (priced as MMS),
 * `ScheduleType` and `SendAt` (a scheduled message can be cancelled or sent outside leash), `PersistentAction` and
 * `TrafficType` (non-SMS channels), `RiskCheck` (turns off Twilio's SMS-pumping check), `ForceDelivery` (reserved).
 */
const MESSAGE_PASSTHROUGH = [
  'StatusCallback',
  'ApplicationSid',
  'MaxPrice',
  'ProvideFeedback',
  'Attempt',
  'ValidityPeriod',
  'ContentRetention',
  'AddressRetention',
  'SmartEncoded',
  'ShortenUrls',
];
type MessageFacts = SmsFacts & { senders: string[]; media: boolean };

/** send_sms's rules, plus what only a raw request can try: another sender, or media (priced apart). */
const messageRules: ToolRules = {
  shape: smsRules.shape,
  ...(smsRules.requires ? { requires: smsRules.requires } : {}),
  check(rule, facts) {
    const f = facts as MessageFacts; // the facts this endpoint's `facts` built
    const pinned = smsRules.of(rule).from;
    const other = f.senders.find((s) => s !== pinned);
    if (other !== undefined)
      return {
        code: 'parameter_not_allowed',
        message: `this policy sends only from ${pinned ?? '(none)'}, not ${other}`,
        details: { parameter: 'From', required: pinned ?? null },
      };
    if (f.media)
      return {
        code: 'parameter_not_allowed',
        message: 'media messages (MediaUrl) are not allowed: their price is not known before sending',
        details: { parameter: 'MediaUrl' },
      };
    return smsRules.check(rule, f);
  },
};

const segmentsOf = (b: MessageBody) => countSegments(b.Body).segments;

const createMessage = defineEndpoint<MessageBody, undefined, TwilioClient>({
  vendor: 'twilio',
  method: 'POST',
  path: MESSAGES,
  description: 'Send a message (as send_sms).',
  body: messageBody,
  passthrough: MESSAGE_PASSTHROUGH,
  params,
  rules: [],
  ownRules: messageRules,
  facts: (req): MessageFacts => ({
    phones: [req.body.To],
    recipients: [req.body.To],
    segments: segmentsOf(req.body),
    senders: [req.body.From, req.body.MessagingServiceSid].filter((v) => v !== undefined),
    media: req.body.MediaUrl !== undefined,
  }),
  estimateCostMicros: (req, _l, pricing) =>
    segmentsOf(req.body) * segmentPriceMicros(req.body.To, smsPrices.read(pricing.prices)),
  async call(ctx, req) {
    const pinned = sender(smsRules.of(ctx.rule).from);
    const form = formOf(req.body);
    // The caller's sender was checked against the pinned one; without one, the pinned one is used.
    if (!form.From && !form.MessagingServiceSid && pinned) {
      if ('from' in pinned) form.From = pinned.from;
      else form.MessagingServiceSid = pinned.messagingServiceSid;
    }
    const res = await send(ctx, 'POST', MESSAGES, req, form);
    const m = res.status < 300 ? jsonObject(res.body) : undefined;
    const cost = segmentsOf(req.body) * segmentPriceMicros(req.body.To, smsPrices.read(ctx.pricing.prices));
    return forwardedEffect(res, {
      read: false,
      requestIdHeader: REQUEST_ID,
      costMicros: cost,
      costStatus: 'pending', // Twilio prices a message once sent; reconcile settles it, as for send_sms
      objectId: typeof m?.sid === 'string' ? m.sid : undefined,
    });
  },
  // The audit row keeps what send_sms's reconcile reads (to, body hash), never the text.
  reconcile: (ctx, row) => sendSms.reconcile!(ctx, row),
  redact: (req, h) => {
    const { Body, ...rest } = req.body;
    return {
      to: req.body.To,
      body_length: Body.length,
      body_sha256: h.hash(Body), // the audit key's HMAC, as send_sms keeps it
      segments: segmentsOf(req.body),
      params: req.params,
      body: rest,
    };
  },
  sensitive: ['body'],
});

const readMessage = defineEndpoint<Record<string, unknown>, undefined, TwilioClient>({
  vendor: 'twilio',
  method: 'GET',
  path: MESSAGE,
  description: 'Fetch a message.',
  body: z.looseObject({}),
  params,
  rules: [],
  facts: () => ({}),
  async call(ctx, req) {
    return forwardedEffect(await send(ctx, 'GET', MESSAGE, req), { read: true, requestIdHeader: REQUEST_ID });
  },
});

/** Twilio's REST front door: `/2010-04-01/Accounts/{AccountSid}/…` at the root, as twilio-node builds it. */
export const twilioApi: VendorApi = {
  vendor: 'twilio',
  prefixes: ['/2010-04-01/'],
  endpoints: [createMessage, readMessage],
  presentedKey: twilioPresentedKey,
  forwardHeaders: [],
  body: 'form',
  refusal: twilioRefusal,
};
