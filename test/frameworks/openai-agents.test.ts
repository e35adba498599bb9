// leash through the OpenAI Agents SDK's own MCP servers (Streamable HTTP and stdio, strict schemas on and off),
// driven by an agent run whose model is a recording stand-in: what it is shown of tools and results, no network.
import {
  Agent,
  MCPServerStdio,
  MCPServerStreamableHttp,
  run,
  setTracingDisabled,
  Usage,
  type AgentInputItem,
  type MCPServer,
  type Model,
  type ModelRequest,
  type ModelResponse,
} from '@openai/agents';
import { toStrictJsonSchema } from 'openai/lib/transform';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INVALID_TEXT, REFUSAL_TEXT, startLeash, TOOL_NAMES, untypedFields, type Leash } from './harness.js';

setTracingDisabled(true);

// The SDK gives each MCP request 5 s by default; a spawned `leash mcp` on a busy machine can take longer to start.
const SESSION_TIMEOUT_S = 60;

let leash: Leash;
beforeAll(async () => {
  leash = await startLeash();
});
afterAll(async () => {
  await leash.close();
});

type Call = { name: string; args: Record<string, unknown> };

/** A model that asks for `calls` on its first turn and records the tools and tool results it is given. */
class RecordingModel implements Model {
  tools: ModelRequest['tools'] = [];
  results = new Map<string, string>();
  constructor(private readonly calls: Call[]) {}

  getResponse(request: ModelRequest): Promise<ModelResponse> {
    const input: AgentInputItem[] = typeof request.input === 'string' ? [] : request.input;
    const results = input.filter((i) => i.type === 'function_call_result');
    if (!results.length) {
      this.tools = request.tools;
      return Promise.resolve({
        usage: new Usage(),
        output: this.calls.map((c, n) => ({
          type: 'function_call' as const,
          callId: `call_${n}`,
          name: c.name,
          arguments: JSON.stringify(c.args),
          status: 'completed' as const,
        })),
      });
    }
    for (const r of results) this.results.set(r.callId, textOf(r.output));
    return Promise.resolve({
      usage: new Usage(),
      output: [
        {
          type: 'message',
          role: 'assistant',
          status: 'completed',
          content: [{ type: 'output_text', text: 'done' }],
        },
      ],
    });
  }

  // eslint-disable-next-line require-yield -- the runs here never stream
  async *getStreamedResponse(): AsyncIterable<never> {
    await Promise.resolve();
    throw new Error('not used');
  }
}

function textOf(output: unknown): string {
  if (typeof output === 'string') return output;
  if (Array.isArray(output)) return output.map(textOf).join('\n');
  if (output && typeof output === 'object' && 'text' in output) return String(output.text);
  return JSON.stringify(output);
}

async function agentRun(server: MCPServer, strict: boolean, calls: Call[]) {
  const model = new RecordingModel(calls);
  await server.connect();
  try {
    const agent = new Agent({
      name: 'support',
      instructions: 'Help the customer.',
      model,
      mcpServers: [server],
      mcpConfig: { convertSchemasToStrict: strict },
    });
    const result = await run(agent, 'Refund pi and text the customer.', { maxTurns: 4 });
    expect(result.finalOutput).toBe('done');
  } finally {
    await server.close();
  }
  return model;
}

function scenario(strict: boolean): Call[] {
  const p = leash.vendors.stripe.addPayment({ customer: 'cus_A', amount: 2500 });
  return [
    // What a strict-mode model emits for fields it leaves out: null.
    {
      name: 'issue_refund',
      args: { payment_intent: p.payment_intent, charge: null, amount: 1000, reason: null },
    },
    { name: 'send_sms', args: { to: '+447700900123', body: 'Your refund is on its way.' } },
    { name: 'send_sms', args: { to: 'tomorrow', body: 'hi' } },
    { name: 'get_budget', args: {} },
    ...(strict
      ? []
      : [
          {
            name: 'send_email',
            args: { to: ['pat@acme.com'], subject: 'Refund', text: 'Done.', html: null, reply_to: null },
          },
        ]),
  ];
}

function expectContract(model: RecordingModel, strict: boolean) {
  const functions = model.tools.filter((t) => t.type === 'function');
  expect(functions.map((t) => t.name).sort()).toEqual(TOOL_NAMES);
  for (const t of functions) {
    expect(untypedFields(t.parameters as Record<string, unknown>), t.name).toEqual([]);
    if (strict) {
      expect(t.strict, t.name).toBe(true);
      expect(() => toStrictJsonSchema(t.parameters as never), t.name).not.toThrow();
    }
  }
  const refund = JSON.parse(model.results.get('call_0') ?? '') as Record<string, unknown>;
  expect(refund).toMatchObject({ amount: 1000, customer: 'cus_A', status: 'succeeded' });
  expect(model.results.get('call_1')).toMatch(REFUSAL_TEXT);
  expect(model.results.get('call_2')).toMatch(INVALID_TEXT);
  expect(model.results.get('call_2')).toContain('to:');
  expect(JSON.parse(model.results.get('call_3') ?? '')).toMatchObject({ policy: 'frameworks' });
  if (!strict) expect(JSON.parse(model.results.get('call_4') ?? '')).toMatchObject({ recipients: 1 });
  // The refused SMS never reached Twilio.
  expect(leash.vendors.twilio.received.filter((r) => r.method === 'POST')).toHaveLength(0);
}

describe('OpenAI Agents SDK', () => {
  it.each([false, true])(
    'over Streamable HTTP (strict %s) lists typed tools and passes results and refusals as text',
    async (strict) => {
      leash.vendors.reset();
      const key = await leash.key();
      const server = new MCPServerStreamableHttp({
        url: leash.url,
        requestInit: { headers: { Authorization: `Bearer ${key}` } },
        clientSessionTimeoutSeconds: SESSION_TIMEOUT_S,
      });
      expectContract(await agentRun(server, strict, scenario(strict)), strict);
    },
  );

  it('answers five identical get_budget calls in one run: reads have their own generous loop limit', async () => {
    const key = await leash.key();
    const server = new MCPServerStreamableHttp({
      url: leash.url,
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
      clientSessionTimeoutSeconds: SESSION_TIMEOUT_S,
    });
    const calls = Array.from({ length: 5 }, () => ({ name: 'get_budget', args: {} }));
    const model = await agentRun(server, true, calls);
    expect(model.results.size).toBe(5);
    for (const text of model.results.values())
      expect(JSON.parse(text)).toMatchObject({ policy: 'frameworks' });
  });

  it('over stdio (a spawned leash mcp) in strict mode does the same', async () => {
    leash.vendors.reset();
    const key = await leash.key();
    const server = new MCPServerStdio({
      ...leash.stdio(key),
      clientSessionTimeoutSeconds: SESSION_TIMEOUT_S,
    });
    expectContract(await agentRun(server, true, scenario(true)), true);
  }, 90_000); // starts a leash process: slow on a busy machine
});
