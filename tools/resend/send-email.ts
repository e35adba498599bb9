import { z } from 'zod';
import type { ToolRule } from '../../src/policy/compile.js';
import { defineTool, type Pricing } from '../../src/pipeline/tool.js';
import type { ResendClient } from './client.js';

const MAX_TO = 50; // Resend's own limit per email
/** The tag that ties an email at Resend to its audit row, so reconcile can find it. */
const CALL_TAG = 'leash_call';
const address = z.email({ error: 'expected an email address' });

function inputSchema(o: { to?: string; maxRecipients?: number } = {}) {
  const list = z.array(address).min(1).max(MAX_TO);
  // The policy cap is advertised, not validated here: evaluate() denies it as too_many_recipients, in the audit log.
  const capped = o.maxRecipients ? list.meta({ maxItems: Math.min(o.maxRecipients, MAX_TO) }) : list;
  return z
    .strictObject({
      to: z
        .union([address, capped])
        .transform((v) => (typeof v === 'string' ? [v] : v))
        .describe(o.to ?? 'Recipient addresses: a list, or one address.'),
      subject: z.string().min(1).max(998).describe('Subject line.'),
      text: z.string().min(1).optional().describe('Plain-text body.'),
      html: z.string().min(1).optional().describe('HTML body.'),
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

const estimate = (i: In, pricing: Pricing) => pricing.emailPriceMicros * i.to.length;

function content(i: In): { text: string; html?: string } | { html: string } {
  if (i.text !== undefined) return i.html === undefined ? { text: i.text } : { text: i.text, html: i.html };
  if (i.html !== undefined) return { html: i.html };
  throw new Error('send_email input has neither text nor html'); // unreachable: the schema refines it
}

function allowedRecipients(rule: ToolRule): string | undefined {
  const domains = rule.toDomains?.length ? `at ${rule.toDomains.join(', ')}` : undefined;
  const addresses = rule.toAddresses?.size ? `one of ${[...rule.toAddresses].join(', ')}` : undefined;
  return domains && addresses ? `${domains} or ${addresses}` : (domains ?? addresses);
}

/** Pages through recent emails for the one tagged with this call's idempotency key. */
async function findSent(client: ResendClient, key: string, to: string[], subject: string) {
  const wanted = [...to].sort().join();
  let after: string | undefined;
  for (let page = 0; page < 5; page++) {
    const list = await client.call((sdk, signal) =>
      sdk.emails.list(after ? { limit: 100, after } : { limit: 100 }, { signal }),
    );
    for (const e of list.data) {
      if (e.subject !== subject || [...e.to].sort().join() !== wanted) continue;
      const email = await client.call((sdk, signal) => sdk.emails.get(e.id, { signal }));
      if (email.tags?.some((t) => t.name === CALL_TAG && t.value === key)) return e.id;
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
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  input,
  output,
  rules: ['from', 'to_domains', 'to_addresses', 'max_recipients'],
  requires: ['from'],
  narrow(rule) {
    const where = allowedRecipients(rule);
    const max = rule.maxRecipients;
    const limits: string[] = [];
    if (where) limits.push(`Recipients must be ${where}.`);
    if (max) limits.push(`At most ${max} recipient${max === 1 ? '' : 's'}.`);
    if (rule.from) limits.push(`Sent from ${rule.from}.`);
    const to = ['Recipient addresses: a list, or one address', where, max ? `at most ${max}` : undefined];
    return {
      input: inputSchema({ to: `${to.filter(Boolean).join('; ')}.`, ...(max ? { maxRecipients: max } : {}) }),
      limits,
    };
  },
  facts: (i) => ({ emails: i.to }),
  estimateCostMicros: (i, _looked, pricing) => estimate(i, pricing),
  async call(ctx, i) {
    const from = ctx.rule.from;
    if (!from) throw new Error('send_email has no pinned sender'); // unreachable: the policy `requires` it
    const email = await ctx.client.call((sdk, signal) =>
      sdk.emails.send(
        {
          from,
          to: i.to,
          subject: i.subject,
          ...content(i),
          ...(i.reply_to ? { replyTo: i.reply_to } : {}),
          tags: [{ name: CALL_TAG, value: ctx.idempotencyKey }],
        },
        { idempotencyKey: ctx.idempotencyKey, signal },
      ),
    );
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
  redact: (i) => ({
    to: i.to,
    subject: i.subject,
    ...(i.reply_to ? { reply_to: i.reply_to } : {}),
    ...(i.text !== undefined ? { text_length: i.text.length } : {}),
    ...(i.html !== undefined ? { html_length: i.html.length } : {}),
  }),
});
