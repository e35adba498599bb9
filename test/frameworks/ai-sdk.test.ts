// leash through the Vercel AI SDK's MCP client (@ai-sdk/mcp, Streamable HTTP) in a generateText tool loop, with
// MockLanguageModelV4 from ai/test as a recording stand-in model: the tools it is given and the results it is shown.
import { createMCPClient } from '@ai-sdk/mcp';
import type { LanguageModelV4CallOptions, LanguageModelV4GenerateResult } from '@ai-sdk/provider';
import { generateText, stepCountIs } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVALID_TEXT, REFUSAL_TEXT, startLeash, TOOL_NAMES, untypedFields, type Leash } from './harness.js';

let leash: Leash;
beforeAll(async () => {
  leash = await startLeash();
});
afterAll(async () => {
  await leash.close();
});

const usage = {
  inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 1, text: 1, reasoning: undefined },
};

/** What a provider would put in front of the model for one tool result. */
function outputText(output: unknown): string {
  const o = output as { type: string; value?: unknown };
  if (o.type === 'text' || o.type === 'error-text') return String(o.value);
  if (o.type === 'content' && Array.isArray(o.value))
    return (o.value as { type: string; text?: string }[])
      .map((p) => (p.type === 'text' ? p.text : ''))
      .join('\n');
  return JSON.stringify(o.value);
}

describe('Vercel AI SDK MCP client', () => {
  it('lists typed tools and passes results and refusals to the model as text, in a generateText loop', async () => {
    const key = await leash.key();
    const client = await createMCPClient({
      transport: { type: 'http', url: leash.url, headers: { Authorization: `Bearer ${key}` } },
    });
    try {
      const p = leash.vendors.stripe.addPayment({ customer: 'cus_A', amount: 2500 });
      const calls = [
        {
          toolName: 'issue_refund',
          input: { payment_intent: p.payment_intent, charge: null, amount: 1000, reason: null },
        },
        { toolName: 'send_sms', input: { to: '+447700900123', body: 'Your refund is on its way.' } },
        { toolName: 'get_payment', input: { payment_intent: null, charge: null } },
      ];
      const shown: LanguageModelV4CallOptions[] = [];
      const model = new MockLanguageModelV4({
        doGenerate: (options): Promise<LanguageModelV4GenerateResult> => {
          shown.push(options);
          const first = shown.length === 1;
          return Promise.resolve({
            content: first
              ? calls.map((c, n) => ({
                  type: 'tool-call' as const,
                  toolCallId: `call_${n}`,
                  toolName: c.toolName,
                  input: JSON.stringify(c.input),
                }))
              : [{ type: 'text' as const, text: 'done' }],
            finishReason: { unified: first ? 'tool-calls' : 'stop', raw: undefined },
            usage,
            warnings: [],
          });
        },
      });
      const result = await generateText({
        model,
        tools: await client.tools(),
        prompt: 'Refund and tell the customer.',
        stopWhen: stepCountIs(3),
      });
      expect(result.text).toBe('done');

      const tools = shown[0]?.tools ?? [];
      expect(tools.map((t) => t.name).sort()).toEqual(TOOL_NAMES);
      for (const t of tools) {
        expect(t.type).toBe('function');
        if (t.type === 'function')
          expect(untypedFields(t.inputSchema as Record<string, unknown>), t.name).toEqual([]);
      }
      const results = new Map<string, string>();
      for (const message of shown[1]?.prompt ?? [])
        if (message.role === 'tool')
          for (const part of message.content)
            if (part.type === 'tool-result') results.set(part.toolCallId, outputText(part.output));
      expect(JSON.parse(results.get('call_0') ?? '')).toMatchObject({ amount: 1000, customer: 'cus_A' });
      expect(results.get('call_1')).toMatch(REFUSAL_TEXT);
      expect(results.get('call_2')).toMatch(INVALID_TEXT);
      expect(leash.vendors.twilio.received.filter((r) => r.method === 'POST')).toHaveLength(0);
    } finally {
      await client.close();
    }
  });
});
