import { createHash } from 'node:crypto';
import { z } from 'zod';
import { VendorError } from '../../src/pipeline/errors.js';
import { defineTool, type Pricing } from '../../src/pipeline/tool.js';
import { emailPrices, type ResendClient } from './client.js';
import { emailRules, type EmailFacts, type EmailRule } from './rules.js';

const MAX_TO = 50; // Resend's own limit per email
/** The tag that ties an email at Resend to its audit row, so reconcile can find it. */
export const CALL_TAG = 'leash_call';
/** What Resend takes as a tag value: letters, digits, _ and -, at most 256. */
const TAG_VALUE = /^[A-Za-z0-9_-]{1,256}$/;

/**
 * The tag value for a call's idempotency key: the key itself when Resend takes it as a value, else its sha-256 in
 * base64url (a caller's key such as `welcome/42`), so every email leash sends is tagged and reconcile finds it.
 */
export function callTag(idempotencyKey: string): string {
  if (TAG_VALUE.test(idempotencyKey)) return idempotencyKey;
  return `h${createHash('sha256').update(idempotencyKey).digest('base64url')}`;
}
// RFC 5321: a path is at most 256 octets with its angle brackets, so an address at most 254; a local part at most 64.
const MAX_ADDRESS = 254;
const MAX_LOCAL = 64;
const MAX_SUBJECT = 998; // RFC 5322 line length; Resend publishes no lower limit
// Resend takes up to 40 MB per email; bodies are bounded to the HTTP front door's 1 MB so stdio accepts no more.
const MAX_BODY = 1_000_000;
// No `abort` on these checks: an aborted branch would hide its message inside the `to` union's "Invalid input".
export const address = z
  .email({ error: 'expected an email address' })
  .max(MAX_ADDRESS, `expected an email address of at most ${MAX_ADDRESS} characters`)
  .refine(
    (a) => a.lastIndexOf('@') <= MAX_LOCAL,
    `expected an email address whose local part (before the @) is at most ${MAX_LOCAL} characters`,
  );

/** The recipients once each (compared without case), in the order first given, so none is priced or sent twice. */
function distinct(to: readonly string[]): string[] {
  const seen = new Set<string>();
  return to.filter((a) => {
    const k = a.toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** `advertised`: the schema agents see, with `to` a list only (no union, which adapters drop); one address is still accepted. */
function inputSchema(o: { to?: string; maxRecipients?: number; advertised?: boolean } = {}) {
  const list = z.array(address).min(1).max(MAX_TO);
  // The policy cap is advertised, not validated here: evaluate() denies it as too_many_recipients, in the audit log.
  const capped = o.maxRecipients ? list.meta({ maxItems: Math.min(o.maxRecipients, MAX_TO) }) : list;
  return z
    .strictObject({
      to: (o.advertised
        ? capped
        : z.union([address, capped]).transform((v) => distinct(typeof v === 'string' ? [v] : v))
      ).describe(o.to ?? 'Recipient addresses, a list of one or more. Repeated addresses are sent to once.'),
      subject: z
        .string()
        .min(1)
        .max(MAX_SUBJECT, `expected at most ${MAX_SUBJECT} characters`)
        .describe('Subject line.'),
      text: z
        .string()
        .min(1)
        .max(MAX_BODY, `expected at most ${MAX_BODY} characters`)
        .optional()
        .describe('Plain-text body.'),
      html: z
        .string()
        .min(1)
        .max(MAX_BODY, `expected at most ${MAX_BODY} characters`)
        .optional()
        .describe('HTML body.'),
      reply_to: address.optional().describe('Reply-To address.'),
    })
    .refine((i) => i.text !== undefined || i.html !== undefined, {
      message: 'give text or html (or both)',
    });
}

const input = inputSchema();
type In = z.output<typeof input>;

const output = z.object({
  id: z.string().describe('Resend email id'),
  to: z.array(z.string()),
  from: z.string(),
  subject: z.string(),
  recipients: z.number().int(),
  cost_usd: z.number(),
});
type Out = z.output<typeof output>;

const estimate = (i: In, pricing: Pricing) => emailPrices.read(pricing.prices) * i.to.length;

function content(i: In): { text: string; html?: string } | { html: string } {
  if (i.text !== undefined) return i.html === undefined ? { text: i.text } : { text: i.text, html: i.html };
  if (i.html !== undefined) return { html: i.html };
  throw new Error('send_email input has neither text nor html'); // unreachable: the schema refines it
}

function allowedRecipients(rule: EmailRule): string | undefined {
  const domains = rule.toDomains?.length ? `at ${rule.toDomains.join(', ')}` : undefined;
  const addresses = rule.toAddresses?.size ? `one of ${[...rule.toAddresses].join(', ')}` : undefined;
  return domains && addresses ? `${domains} or ${addresses}` : (domains ?? addresses);
}

/** Pages through recent emails for the one tagged with this call's idempotency key. */
async function findSent(client: ResendClient, key: string, to: string[], subject: string) {
  const wanted = [...to].sort().join();
  let after: string | undefined;
  for (let page = 0; page < 5; page++) {
    const list = await client.run((sdk, signal) =>
      sdk.emails.list(after ? { limit: 100, after } : { limit: 100 }, { signal }),
    );
    for (const e of list.data) {
      if (e.subject !== subject || [...e.to].sort().join() !== wanted) continue;
      const email = await client.run((sdk, signal) => sdk.emails.get(e.id, { signal }));
      if (email.tags?.some((t) => t.name === CALL_TAG && t.value === callTag(key))) return e.id;
    }
    after = list.data.at(-1)?.id;
    if (!list.has_more || !after) return undefined;
  }
  return undefined;
}

const auditedRequest = z.object({ to: z.array(z.string()), subject: z.string() });

export const sendEmail = defineTool<In, undefined, Out, ResendClient>({
  name: 'send_email',
  title: 'Send email',
  description:
    'Sends one email through Resend. The sender is fixed by policy; give `to`, `subject` and `text` and/or `html`.',
  vendor: 'resend',
  operation: 'POST /emails',
  dedupesByKey: true,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  input,
  output,
  rules: [],
  ownRules: emailRules,
  narrow(ruleOf) {
    const rule = emailRules.of(ruleOf);
    const where = allowedRecipients(rule);
    const max = rule.maxRecipients;
    const limits: string[] = [];
    if (where) limits.push(`Recipients must be ${where}.`);
    if (max) limits.push(`At most ${max} recipient${max === 1 ? '' : 's'}.`);
    if (rule.from) limits.push(`Sent from ${rule.from}.`);
    const to = ['Recipient addresses, a list of one or more', where, max ? `at most ${max}` : undefined];
    return {
      input: inputSchema({
        to: `${to.filter(Boolean).join('; ')}.`,
        advertised: true,
        ...(max ? { maxRecipients: max } : {}),
      }),
      limits,
    };
  },
  facts: (i): EmailFacts => ({ emails: i.to, recipients: i.to }),
  estimateCostMicros: (i, _looked, pricing) => estimate(i, pricing),
  async call(ctx, i) {
    const from = emailRules.of(ctx.rule).from;
    if (!from) throw new Error('send_email has no pinned sender'); // unreachable: the policy `requires` it
    const email = await ctx.client.run((sdk, signal) =>
      sdk.emails.send(
        {
          from,
          to: i.to,
          subject: i.subject,
          ...content(i),
          ...(i.reply_to ? { replyTo: i.reply_to } : {}),
          tags: [{ name: CALL_TAG, value: callTag(ctx.idempotencyKey) }],
        },
        { idempotencyKey: ctx.idempotencyKey, signal },
      ),
    );
    // Resend answered, but without the email's id leash cannot settle it or find it again.
    if (typeof email.id !== 'string' || !email.id)
      throw new VendorError({
        vendor: 'resend',
        kind: 'unreadable',
        message: 'Resend answered without the email leash asked for',
      });
    const cost = estimate(i, ctx.pricing);
    return {
      output: {
        id: email.id,
        to: i.to,
        from,
        subject: i.subject,
        recipients: i.to.length,
        cost_usd: cost / 1e6,
      },
      costMicros: cost,
      costStatus: 'settled',
      vendorObjectId: email.id,
    };
  },
  // Resend honours an idempotency key only with a byte-identical payload, and the audit row keeps no bodies, so
  // reconcile cannot replay: it finds the email by the tag call() put on it (or stays unknown, reservation held).
  async reconcile(ctx, row) {
    const req = auditedRequest.safeParse(row.request);
    if (!req.success) return { outcome: 'unknown' };
    const id =
      row.vendorObjectId ?? (await findSent(ctx.client, row.idempotencyKey, req.data.to, req.data.subject));
    if (!id) return { outcome: 'unknown' };
    // The reservation is the estimate call() would have settled at.
    return {
      outcome: 'succeeded',
      costMicros: row.reservedMicros,
      costStatus: 'settled',
      vendorObjectId: id,
    };
  },
  sensitive: ['text', 'html'],
  redact: (i) => ({
    to: i.to,
    subject: i.subject,
    ...(i.reply_to ? { reply_to: i.reply_to } : {}),
    ...(i.text !== undefined ? { text_length: i.text.length } : {}),
    ...(i.html !== undefined ? { html_length: i.html.length } : {}),
  }),
});
