// Resend's own REST API as leash's second front door: send an email (send_email's rules: pinned sender,
// to_domains/to_addresses, max_recipients — counting cc and bcc) and read one, with the server-held key.
import { z } from 'zod';
import type { ToolRules } from '../../src/policy/rule-set.js';
import type { CallContext } from '../../src/pipeline/tool.js';
import type { ForwardedResponse } from '../../src/vendor-kit/forward.js';
import {
  defineEndpoint,
  encodeForm,
  forwardedEffect,
  jsonObject,
  type RestRequest,
  type VendorApi,
} from '../../src/vendor-kit/rest-api.js';
import { emailPrices, type ResendClient } from './client.js';
import { resendPresentedKey, resendRefusal } from './http-shape.js';
import { emailRules, type EmailFacts } from './rules.js';
import { address, CALL_TAG, callTag, sendEmail } from './send-email.js';

const REQUEST_ID = 'x-request-id';

function send(
  ctx: CallContext<ResendClient>,
  method: string,
  path: string,
  req: RestRequest<unknown>,
  json?: unknown,
  idempotencyKey?: string,
): Promise<ForwardedResponse> {
  const headers: Record<string, string> = {};
  if (json !== undefined) headers['content-type'] = 'application/json';
  if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
  return ctx.client.forward({
    method,
    path,
    query: new URLSearchParams(encodeForm(req.query)),
    ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
    headers,
  });
}

// Recipients as send_email takes them: one address per entry (never "a@x.com, b@y.com", which would pass a
// domain rule on its last address alone), a string or a list of them.
const addresses = z.union([address, z.array(address).min(1).max(50)]);
/** A field leash does not forward: what it would do cannot be checked by policy. */
const refused = (why: string) => z.undefined({ error: why }).optional();
/** A nested object whose every field is listed here: another is refused, naming it. */
const closed = <S extends z.ZodRawShape>(what: string, shape: S) =>
  z.strictObject(shape, {
    error: (iss) =>
      iss.code === 'unrecognized_keys'
        ? `not ${what} field leash forwards: ${iss.keys.join(', ')} (expected one of: ${Object.keys(shape).join(', ')})`
        : undefined,
  });
const emailBody = z.looseObject({
  from: z.string().min(1).optional(),
  to: addresses,
  cc: addresses.optional(),
  bcc: addresses.optional(),
  reply_to: addresses.optional(),
  subject: z.string().min(1),
  tags: z.array(closed('a tag', { name: z.string(), value: z.string() })).optional(),
  headers: refused('custom headers are not allowed: they can add recipients or senders policy does not see'),
  scheduled_at: refused(
    'scheduled sending is not allowed: a scheduled email can be rescheduled or cancelled outside leash',
  ),
  attachments: z
    .array(
      // Resend's attachment fields; a remote `path` is refused.
      closed('an attachment', {
        content: z.unknown().optional(),
        filename: z.unknown().optional(),
        content_type: z.unknown().optional(),
        content_id: z.unknown().optional(),
        path: refused('attachments by remote path are not allowed: send the content itself'),
      }),
    )
    .optional(),
});
type EmailBody = z.infer<typeof emailBody>;
/**
 * Send-email fields forwarded unread, from Resend's API reference (resend/resend-openapi `resend.json`, POST /emails).
 * Not forwarded: `template` (a published template brings its own text and may bring its own sender and subject).
 */
const EMAIL_PASSTHROUGH = ['text', 'html', 'topic_id'];
type ProxiedEmailFacts = EmailFacts & { sender: string | null };

const list = (v: string | string[] | undefined) => (v === undefined ? [] : typeof v === 'string' ? [v] : v);
/** Every recipient once (to, cc and bcc), compared without case: each is checked and priced. */
function recipients(b: EmailBody): string[] {
  const seen = new Set<string>();
  return [...list(b.to), ...list(b.cc), ...list(b.bcc)].filter((a) => {
    const k = a.toLowerCase();
    return seen.has(k) ? false : (seen.add(k), true);
  });
}

/** send_email's rules, plus what only a raw request can try: another sender. */
const proxiedEmailRules: ToolRules = {
  shape: emailRules.shape,
  ...(emailRules.requires ? { requires: emailRules.requires } : {}),
  check(rule, facts) {
    const f = facts as ProxiedEmailFacts; // the facts this endpoint's `facts` built
    const pinned = emailRules.of(rule).from;
    if (f.sender !== null && f.sender !== pinned)
      return {
        code: 'parameter_not_allowed',
        message: `this policy sends only from ${pinned ?? '(none)'}, not ${f.sender}`,
        details: { parameter: 'from', required: pinned ?? null },
      };
    return emailRules.check(rule, f);
  },
};

const createEmail = defineEndpoint<EmailBody, undefined, ResendClient>({
  vendor: 'resend',
  method: 'POST',
  path: '/emails',
  dedupesByKey: true,
  description: 'Send an email (as send_email; cc and bcc count as recipients).',
  body: emailBody,
  passthrough: EMAIL_PASSTHROUGH,
  rules: [],
  ownRules: proxiedEmailRules,
  facts: (req): ProxiedEmailFacts => ({
    emails: recipients(req.body),
    recipients: recipients(req.body),
    sender: req.body.from ?? null,
  }),
  estimateCostMicros: (req, _l, pricing) => emailPrices.read(pricing.prices) * recipients(req.body).length,
  async call(ctx, req) {
    const from = req.body.from ?? emailRules.of(ctx.rule).from;
    // Tagged as send_email tags its emails, so reconcile finds this one by the key Resend saw.
    const tag = { name: CALL_TAG, value: callTag(ctx.idempotencyKey) };
    const json = { ...req.body, from, tags: [...(req.body.tags ?? []), tag] };
    const res = await send(ctx, 'POST', '/emails', req, json, ctx.idempotencyKey);
    const m = res.status < 300 ? jsonObject(res.body) : undefined;
    return forwardedEffect(res, {
      read: false,
      requestIdHeader: REQUEST_ID,
      costMicros: emailPrices.read(ctx.pricing.prices) * recipients(req.body).length,
      objectId: typeof m?.id === 'string' ? m.id : undefined,
    });
  },
  // The audit row keeps what send_email's reconcile reads (to, subject), never the bodies.
  reconcile: (ctx, row) => sendEmail.reconcile!(ctx, row),
  redact: (req) => {
    const b = req.body;
    const { html, text, ...rest } = b;
    return {
      ...rest,
      to: list(b.to),
      ...(typeof text === 'string' ? { text_length: text.length } : {}),
      ...(typeof html === 'string' ? { html_length: html.length } : {}),
    };
  },
  sensitive: ['body'],
});

const readEmail = defineEndpoint<Record<string, unknown>, undefined, ResendClient>({
  vendor: 'resend',
  method: 'GET',
  path: '/emails/{id}',
  description: 'Retrieve an email.',
  body: z.looseObject({}),
  rules: [],
  facts: () => ({}),
  async call(ctx, req) {
    const res = await send(ctx, 'GET', `/emails/${encodeURIComponent(req.params.id ?? '')}`, req);
    return forwardedEffect(res, { read: true, requestIdHeader: REQUEST_ID });
  },
});

/** Resend's REST front door at the root (resend-node's `baseUrl` option or RESEND_BASE_URL). */
export const resendApi: VendorApi = {
  vendor: 'resend',
  // Every top-level collection of Resend's API: anything under them not declared here is refused.
  prefixes: [
    '/emails',
    '/domains',
    '/api-keys',
    '/audiences',
    '/contacts',
    '/broadcasts',
    '/webhooks',
    '/templates',
    '/segments',
    '/topics',
  ],
  endpoints: [createEmail, readEmail],
  presentedKey: resendPresentedKey,
  forwardHeaders: [],
  body: 'json',
  refusal: resendRefusal,
};
