import { z } from 'zod';
import { formatUsd } from '../../src/policy/money.js';
import { defineTool, type BudgetView } from '../../src/pipeline/tool.js';

const output = z.object({
  key_id: z.string(),
  agent: z.string(),
  run_id: z.string().nullable(),
  policy: z.string(),
  policy_version: z.number().int(),
  expires_at: z.string().nullable(),
  scopes: z.array(
    z.object({
      scope: z.enum(['key', 'policy']),
      window: z.enum(['day', 'hour']),
      unit: z.enum(['usd_micros', 'requests']),
      cap: z.number(),
      used: z.number(),
      reserved: z.number(),
      remaining: z.number(),
      resets_at: z.string(),
    }),
  ),
  paused: z
    .object({
      scope_kind: z.enum(['key', 'run', 'agent', 'policy']),
      scope: z.string(),
      wire: z.string().nullable(),
      metric: z.string().nullable(),
      figure: z.number().nullable(),
      limit: z.number().nullable(),
      window_seconds: z.number().nullable(),
      paused_at: z.string(),
      paused_by: z.string(),
    })
    .nullable(),
  summary: z.string(),
});

/** What the agent must hear first when its key is paused: that it is, why, and that it must stop. */
function pausedText(p: NonNullable<BudgetView['paused']>): string {
  const what = p.scope_kind === 'key' ? 'This key' : `This key's ${p.scope_kind} (${p.scope})`;
  const why = p.wire
    ? `tripwire '${p.wire}' tripped (${p.figure ?? '?'} ${p.metric ?? ''} over its limit of ${p.limit ?? '?'} in ${p.window_seconds ?? '?'}s)`
    : `an operator (${p.paused_by}) paused it`;
  return `${what} is PAUSED since ${p.paused_at}: ${why}. Every call is refused key_paused; stop and ask a human: only an operator can resume it.`;
}

function summarise(b: BudgetView): string {
  const parts = b.scopes.map((s) =>
    s.unit === 'usd_micros'
      ? `${formatUsd(s.remaining)} of ${formatUsd(s.cap)} left today (${s.scope})`
      : `${s.remaining} of ${s.cap} requests left this hour (${s.scope})`,
  );
  if (!parts.length) parts.push('no spend or request caps apply');
  const budget = `${parts.join('; ')}. Key ${b.expires_at ? `expires ${b.expires_at}` : 'does not expire'}.`;
  return b.paused ? `${pausedText(b.paused)} ${budget}` : budget;
}

/** What this vault key may still spend and do, per scope, and when it expires. Free; not counted as a request. */
export const getBudget = defineTool<Record<string, never>, undefined, z.infer<typeof output>, undefined>({
  name: 'get_budget',
  title: 'Check remaining budget',
  description:
    'What this key may still spend (USD, today, UTC) and do (requests, this hour) under its policy, per scope, and when the key expires; `paused` says when the key, its run, agent or policy is paused (stop: only an operator can resume it). Amounts are micro-USD (1 USD = 1,000,000).',
  vendor: undefined,
  operation: 'leash budget',
  annotations: {
    title: 'Check remaining budget',
    readOnlyHint: true,
    destructiveHint: false,
    idempotentHint: true,
    openWorldHint: false,
  },
  input: z.strictObject({}),
  output,
  rules: [],
  countsAsRequest: false,
  facts: () => ({}),
  estimateCostMicros: () => 0,
  async call(ctx) {
    const b = await ctx.budget();
    return { output: { ...b, summary: summarise(b) }, costMicros: 0, costStatus: 'settled' };
  },
});
