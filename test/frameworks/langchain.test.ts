// leash through LangChain's MCP adapters (Streamable HTTP) in a createAgent loop (its ToolNode runs the tools),
// with a recording stand-in chat model: the tool schemas it is bound to and the tool messages it is shown.
import { BaseChatModel } from '@langchain/core/language_models/chat_models';
import { AIMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages';
import type { ChatResult } from '@langchain/core/outputs';
import { convertToOpenAITool } from '@langchain/core/utils/function_calling';
import { MultiServerMCPClient } from '@langchain/mcp-adapters';
import { createAgent } from 'langchain';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVALID_TEXT, REFUSAL_TEXT, startLeash, TOOL_NAMES, untypedFields, type Leash } from './harness.js';

let leash: Leash;
beforeAll(async () => {
  leash = await startLeash();
});
afterAll(async () => {
  await leash.close();
});

type Call = { name: string; args: Record<string, unknown> };

/** Asks for `calls` on its first turn; records the tools it is bound to and every tool message it is shown. */
class RecordingChatModel extends BaseChatModel {
  shownTools: Record<string, unknown>[] = [];
  results = new Map<string, string>();
  constructor(private readonly calls: Call[]) {
    super({});
  }
  _llmType(): string {
    return 'recording';
  }
  override bindTools(tools: Parameters<typeof convertToOpenAITool>[0][]): this {
    this.shownTools = tools.map((t) => convertToOpenAITool(t) as unknown as Record<string, unknown>);
    return this;
  }
  _generate(messages: BaseMessage[]): Promise<ChatResult> {
    const results = messages.filter((m) => ToolMessage.isInstance(m));
    for (const m of results) this.results.set(m.tool_call_id, contentText(m.content));
    const message = results.length
      ? new AIMessage('done')
      : new AIMessage({
          content: '',
          tool_calls: this.calls.map((c, n) => ({
            id: `call_${n}`,
            name: c.name,
            args: c.args,
            type: 'tool_call' as const,
          })),
        });
    return Promise.resolve({ generations: [{ text: '', message }] });
  }
}

/** A message's content as a provider sends it: a string as is, text blocks' text joined. */
function contentText(content: BaseMessage['content']): string {
  if (typeof content === 'string') return content;
  return content
    .map((b) => ('text' in b && typeof b.text === 'string' ? b.text : JSON.stringify(b)))
    .join('\n');
}

describe('LangChain MCP adapters', () => {
  it('lists typed tools and passes results and refusals to the model as text, in a createAgent loop', async () => {
    const key = await leash.key();
    const client = new MultiServerMCPClient({
      mcpServers: {
        leash: { transport: 'http', url: leash.url, headers: { Authorization: `Bearer ${key}` } },
      },
    });
    try {
      const tools = await client.getTools();
      const p = leash.vendors.stripe.addPayment({ customer: 'cus_A', amount: 2500 });
      const model = new RecordingChatModel([
        {
          name: 'issue_refund',
          args: { payment_intent: p.payment_intent, charge: null, amount: 1000, reason: null },
        },
        { name: 'send_sms', args: { to: '+447700900123', body: 'Your refund is on its way.' } },
        // Valid for the schema (LangChain checks that itself), refused by leash: exactly one payment is needed.
        { name: 'get_payment', args: { payment_intent: null, charge: null } },
        {
          name: 'send_email',
          args: { to: ['pat@acme.com'], subject: 'Refund', text: 'Done.', html: null, reply_to: null },
        },
      ]);
      const agent = createAgent({ model, tools });
      await agent.invoke({ messages: [{ role: 'user', content: 'Refund and tell the customer.' }] });

      expect(model.shownTools.map((t) => (t.function as { name: string }).name).sort()).toEqual(TOOL_NAMES);
      for (const t of model.shownTools) {
        const fn = t.function as { name: string; parameters: Record<string, unknown> };
        expect(untypedFields(fn.parameters), fn.name).toEqual([]);
      }
      // The adapter (1.1.4) hands the model its text block with structuredContent attached, as one string;
      // leash's part of it is the text: one compact JSON object.
      const refund = JSON.parse(model.results.get('call_0') ?? '') as { text: string };
      expect(JSON.parse(refund.text)).toMatchObject({ amount: 1000, customer: 'cus_A', status: 'succeeded' });
      expect(refund.text).not.toContain('\n');
      // A refusal becomes a ToolException whose message is leash's text: code, retry advice, audit id.
      expect(model.results.get('call_1')).toMatch(REFUSAL_TEXT);
      expect(model.results.get('call_2')).toMatch(INVALID_TEXT);
      expect(model.results.get('call_2')).toContain(
        'payment_intent: give exactly one of payment_intent or charge',
      );
      const email = JSON.parse(model.results.get('call_3') ?? '') as { text: string };
      expect(JSON.parse(email.text)).toMatchObject({ recipients: 1 });
      expect(leash.vendors.twilio.received.filter((r) => r.method === 'POST')).toHaveLength(0);
    } finally {
      await client.close();
    }
  });
});
