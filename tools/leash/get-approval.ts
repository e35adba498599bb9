import { z } from 'zod';
import { formatUsd } from '../../src/policy/money.js';
import { VendorError } from '../../src/pipeline/errors.js';
import { defineTool, type ApprovalView } from '../../src/pipeline/tool.js';

const input = z.strictObject({
  approval_id: z.string().min(1).max(100).describe('the approval_id an approval_required refusal returned'),
});

const output = z.object({
  approval_id: z.string(),
  status: z.enum(['pending', 'approved', 'denied', 'expired', 'used']),
  tool: z.string(),
  usd_micros: z.number(),
  created_at: z.string(),
  expires_at: z.string(),
  decided_at: z.string().nullable(),
  note: z.string().nullable(),
  next: z.string().describe('what to do now'),
});

const NEXT: Record<ApprovalView['status'], (a: ApprovalView) => string> = {
  pending: (a) => `No one has decided yet; ask again later (the request is open until ${a.expires_at}).`,
  approved: (a) =>
    `Approved: call ${a.tool} again with exactly the same arguments before ${a.expires_at}; it will be admitted once.`,
  denied: () => 'Denied by a person: do not make this call; report to a human.',
  expired: () => 'Expired without being used: nothing was sent. Only call again if a person still wants it.',
  used: () => 'Already used: the approved call was admitted. A second identical call needs a new approval.',
};

/** Where one of this key's held calls stands. Free; listed whenever the policy holds any call for a person. */
export const getApproval = defineTool<z.infer<typeof input>, undefined, z.infer<typeof output>, undefined>({
  name: 'get_approval',
  title: 'Check an approval',
  description:
    'Where a call that was held for a person (approval_required) stands: pending, approved, denied, expired or used. ' +
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
  facts: () => ({}),
  estimateCostMicros: () => 0,
  async call(ctx, args) {
    if (!ctx.approval) throw new Error('approval reader missing from the call context');
    const a = await ctx.approval(args.approval_id);
    // The same answer for another key's request as for none: ids are not an oracle.
    if (!a)
      throw new VendorError({
        vendor: 'leash',
        kind: 'rejected',
        status: 404,
        vendorCode: 'approval_not_found',
        message: 'this key has no approval request with that id',
        definite: true,
      });
    const next = `${NEXT[a.status](a)} Amount ${formatUsd(a.usd_micros)}.`;
    return { output: { ...a, next }, costMicros: 0, costStatus: 'settled' };
  },
});
