import { z } from 'zod';
import { formatUsd } from '../../src/policy/money.js';
import { PolicyDenied } from '../../src/pipeline/errors.js';
import { defineTool, type ApprovalView } from '../../src/pipeline/tool.js';

/** The longest wait one call may ask for (under common 30 s tool-call timeouts). */
const MAX_WAIT_SECONDS = 25;

const input = z.strictObject({
  approval_id: z.string().min(1).max(100).describe('the approval_id an approval_required refusal returned'),
  wait_seconds: z
    .number()
    .int()
    .min(0)
    .max(MAX_WAIT_SECONDS)
    .optional()
    .describe(
      `While the request is pending, wait up to this many seconds (0-${MAX_WAIT_SECONDS}) and answer as soon as a person decides. Default: answer at once.`,
    ),
});

const output = z.object({
  approval_id: z.string(),
  status: z.enum(['pending', 'approved', 'denied', 'expired', 'used', 'cancelled']),
  tool: z.string(),
  usd_micros: z.number(),
  created_at: z.string(),
  expires_at: z.string(),
  decided_at: z.string().nullable(),
  note: z.string().nullable(),
  cancel_reason: z.string().nullable().describe('why a cancelled request was closed (key_revoked)'),
  next: z.string().describe('what to do now'),
});

const NEXT: Record<ApprovalView['status'], (a: ApprovalView) => string> = {
  pending: (a) =>
    `No one has decided yet; ask again with wait_seconds (up to ${MAX_WAIT_SECONDS}) to wait for the decision (the request is open until ${a.expires_at}).`,
  approved: (a) =>
    `Approved: call ${a.tool} again with exactly the same arguments before ${a.expires_at}; it will be admitted once.`,
  denied: () => 'Denied by a person: do not make this call; report to a human.',
  expired: () => 'Expired without being used: nothing was sent. Only call again if a person still wants it.',
  used: () => 'Already used: the approved call was admitted. A second identical call needs a new approval.',
  cancelled: (a) =>
    `Cancelled (${a.cancel_reason ?? 'cancelled'}): nothing was sent and it can no longer be approved; stop and report to a human.`,
};

/** Where one of this key's held calls stands. Free; listed whenever the policy holds any call for a person. */
export const getApproval = defineTool<z.infer<typeof input>, ApprovalView, z.infer<typeof output>, undefined>(
  {
    name: 'get_approval',
    title: 'Check an approval',
    description:
      'Where a call that was held for a person (approval_required) stands: pending, approved, denied, expired, used or cancelled. ' +
      `Pass wait_seconds (up to ${MAX_WAIT_SECONDS}) to wait for the decision in one call instead of asking again and again. ` +
      'Once approved, call the same tool again with exactly the same arguments; it is admitted once.',
    vendor: undefined,
    operation: 'leash approval',
    annotations: {
      title: 'Check an approval',
      readOnlyHint: true,
      destructiveHint: false,
      idempotentHint: true,
      openWorldHint: false,
    },
    input,
    output,
    rules: [],
    countsAsRequest: false,
    // Before admission, so an id this key does not own is refused (and audited) as approval_not_found.
    async lookup(ctx, args) {
      if (!ctx.approval) throw new Error('approval reader missing from the lookup context');
      const a = await ctx.approval(args.approval_id);
      // The same answer for another key's request as for none: ids are not an oracle.
      if (!a) throw new PolicyDenied('approval_not_found', 'this key has no approval request with that id');
      return a;
    },
    facts: () => ({}),
    estimateCostMicros: () => 0,
    async call(ctx, args, looked) {
      if (!ctx.approval) throw new Error('approval reader missing from the call context');
      const a =
        looked.status === 'pending' && args.wait_seconds
          ? ((await ctx.approval(args.approval_id, args.wait_seconds)) ?? looked)
          : looked;
      const next = `${NEXT[a.status](a)} Amount ${formatUsd(a.usd_micros)}.`;
      return { output: { ...a, next }, costMicros: 0, costStatus: 'settled' };
    },
  },
);
