// Rule tables for evaluate(): for every rule (generic, and the ones tools declare), a call it allows and a call
// it denies with the right code; and that a rule no tool declares is refused, when applied and when evaluated.
import { describe, expect, it } from 'vitest';
import { emailRules } from '../../tools/resend/rules.js';
import { smsRules } from '../../tools/twilio/rules.js';
import { compilePolicy, PolicyFileError, validatePolicy, type ToolRuleSpec } from './compile.js';
import { evaluate, type EvaluationRequest, type PolicyFacts } from './evaluate.js';

const catalog = new Map<string, ToolRuleSpec>([
  ['issue_refund', { vendor: 'stripe', rules: ['max_amount_usd', 'customers'] }],
  ['send_sms', { vendor: 'twilio', rules: [], own: smsRules }],
  ['send_email', { vendor: 'resend', rules: [], own: emailRules }],
  ['get_budget', { rules: [] }],
]);

const policy = compilePolicy(
  validatePolicy(
    {
      name: 'support',
      limits: { daily_usd: 500 },
      tools: {
        issue_refund: { max_amount_usd: 50, customers: ['cus_A', 'cus_B'] },
        send_sms: {
          from: '+15550001111',
          to_prefixes: ['+1'],
          to_numbers: ['+447700900123'],
          max_segments: 3,
        },
        send_email: {
          from: 'Support <support@acme.com>',
          to_domains: ['acme.com', '*.acme.io'],
          to_addresses: ['ceo@partner.org'],
          max_recipients: 2,
        },
        get_budget: null,
      },
      loop_guard: { identical_calls: 3, window: '10m' },
    },
    catalog,
  ),
  1,
);

const now = new Date('2026-11-22T12:00:00Z');

function req(tool: string, facts: PolicyFacts, over: Partial<EvaluationRequest> = {}): EvaluationRequest {
  return {
    tool,
    policy,
    key: { revokedAt: null, expiresAt: null },
    now,
    ownRules: catalog.get(tool)?.own,
    facts,
    fxRates: { EUR: 1.1 },
    ...over,
  };
}

const refund = (minor: number, currency = 'usd', customer: string | null = 'cus_A') => ({
  amount: { minor, currency },
  customer,
});

describe('evaluate', () => {
  it.each([
    ['a refund within the per-call limit to a listed customer', req('issue_refund', refund(5000))],
    [
      'a refund in a currency with a configured rate, within the limit',
      req('issue_refund', refund(4500, 'eur')),
    ],
    [
      'an SMS to an allowed prefix within the segment limit',
      req('send_sms', { phones: ['+15551234567'], segments: 3 }),
    ],
    [
      'an SMS to an exactly listed number outside the prefixes',
      req('send_sms', { phones: ['+447700900123'], segments: 1 }),
    ],
    [
      'an email to an allowed domain, a wildcard subdomain and a listed address',
      req('send_email', { emails: ['a@acme.com', 'b@eu.acme.io'] }),
    ],
    ['an email to a listed address', req('send_email', { emails: ['CEO@partner.org'] })],
    [
      'a key that expires in the future',
      req('get_budget', {}, { key: { revokedAt: null, expiresAt: new Date(now.getTime() + 1000) } }),
    ],
  ])('allows %s', (_name, request) => {
    expect(evaluate(request)).toMatchObject({ allow: true });
  });

  it.each([
    ['key_revoked', req('get_budget', {}, { key: { revokedAt: now, expiresAt: null } })],
    ['key_expired', req('get_budget', {}, { key: { revokedAt: null, expiresAt: now } })],
    ['tool_not_allowed', req('delete_everything', {})],
    ['amount_over_limit', req('issue_refund', refund(5001))],
    ['amount_over_limit', req('issue_refund', refund(4600, 'eur'))],
    ['amount_over_limit', req('issue_refund', {})],
    ['currency_not_supported', req('issue_refund', refund(100, 'gbp'))],
    ['customer_not_allowed', req('issue_refund', refund(100, 'usd', 'cus_Z'))],
    ['customer_not_allowed', req('issue_refund', refund(100, 'usd', null))],
    ['recipient_not_allowed', req('send_sms', { phones: ['+447700900999'], segments: 1 })],
    ['too_many_segments', req('send_sms', { phones: ['+15551234567'], segments: 4 })],
    ['recipient_not_allowed', req('send_email', { emails: ['x@evil.com'] })],
    ['recipient_not_allowed', req('send_email', { emails: ['x@acme.com.evil.com'] })],
    ['too_many_recipients', req('send_email', { emails: ['a@acme.com', 'b@acme.com', 'c@acme.com'] })],
    ['tool_not_allowed', req('send_sms', { segments: 1 })],
    ['tool_not_allowed', req('send_sms', { phones: ['+15551234567'], segments: 1 }, { ownRules: undefined })],
  ])('denies with %s', (code, request) => {
    const d = evaluate(request);
    expect(d.allow).toBe(false);
    if (!d.allow) {
      expect(d.code).toBe(code);
      expect(d.message.length).toBeGreaterThan(5);
    }
  });

  it('converts the allowed amount to micro-USD for the reservation', () => {
    expect(evaluate(req('issue_refund', refund(1234)))).toEqual({ allow: true, amountMicros: 12_340_000 });
    expect(evaluate(req('issue_refund', refund(1000, 'eur')))).toEqual({
      allow: true,
      amountMicros: 11_000_000,
    });
  });
});

describe('approval rules', () => {
  const held = compilePolicy(
    validatePolicy(
      {
        name: 'held',
        tools: {
          issue_refund: { max_amount_usd: 500, approval: { above_usd: 100, expires: '30m' } },
          send_sms: { from: '+15550001111', approval: { always: true, expires: '2h' } },
        },
      },
      catalog,
    ),
    1,
  );
  const call = (tool: string, facts: PolicyFacts) => req(tool, facts, { policy: held });

  it.each([
    ['a refund at the threshold goes through unheld', call('issue_refund', refund(10_000)), undefined],
    [
      'a refund over the threshold waits for a person',
      call('issue_refund', refund(15_000)),
      { expiresSeconds: 1800, reason: 'above_usd', aboveMicros: 100_000_000 },
    ],
    [
      'a rule with always holds a call that moves no money',
      call('send_sms', { phones: ['+15551234567'], segments: 1 }),
      { expiresSeconds: 7200, reason: 'always' },
    ],
  ])('%s', (_name, request, approval) => {
    const d = evaluate(request);
    expect(d.allow).toBe(true);
    if (d.allow) expect(d.approval).toEqual(approval);
  });

  it('checks every other rule first: an amount over the per-call limit is denied, not held', () => {
    expect(evaluate(call('issue_refund', refund(60_000)))).toMatchObject({
      allow: false,
      code: 'amount_over_limit',
    });
  });

  it('lists get_approval for a policy with an approval rule, and not otherwise', () => {
    expect(held.approvals).toBe(true);
    expect(held.tools.has('get_approval')).toBe(true);
    expect(policy.tools.has('get_approval')).toBe(false);
  });

  it.each([
    [{ issue_refund: { approval: { expires: '30m' } } }, 'exactly one of above_usd or always'],
    [{ issue_refund: { approval: { above_usd: 1, always: true } } }, 'exactly one of above_usd or always'],
    [{ send_sms: { from: '+1555', approval: { above_usd: 5 } } }, 'moves no money'],
    [{ get_budget: { approval: { above_usd: 5 } } }, 'moves no money'],
    [{ issue_refund: { approval: { always: true, expires: '8d' } } }, 'at most 7d'],
    [{ issue_refund: { approval: { always: true, later: 1 } } }, 'later'],
  ])('rejects the approval rule %j naming %s', (tools, needle) => {
    expect(() => validatePolicy({ name: 'p', tools }, catalog)).toThrow(needle);
  });
});

describe('validatePolicy', () => {
  it('accepts the policy file format as before, tool-declared rules included', () => {
    expect(policy.tools.get('send_sms')?.source).toMatchObject({ from: '+15550001111', max_segments: 3 });
    expect(smsRules.of(policy.tools.get('send_sms')!).toNumbers?.has('+447700900123')).toBe(true);
  });

  it.each([
    [{ name: 'p', tools: {}, surprise: 1 }, 'surprise'],
    [{ name: 'p', tools: { issue_refund: { max_amount: 5 } } }, 'tools.issue_refund'],
    [{ name: 'p', tools: { send_sms: { to_prefixes: ['+1'] } } }, "send_sms requires 'from'"],
    [
      { name: 'p', tools: { send_sms: { from: '+1555', customers: ['cus_A'] } } },
      "'customers' does not apply to send_sms",
    ],
    [{ name: 'p', tools: { launch_rockets: null } }, "unknown tool 'launch_rockets'"],
    [{ name: 'p', tools: { send_sms: { from: '+1555', to_prefixes: ['1'] } } }, 'to_prefixes'],
    [{ name: 'Bad Name', tools: {} }, 'name'],
    [{ name: 'p', limits: { daily_usd: -1 }, tools: {} }, 'limits.daily_usd'],
    [{ name: 'p', tools: { send_sms: { from: 'Support <s@acme.com>' } } }, "send_sms 'from' must be"],
    [{ name: 'p', tools: { send_email: { from: 'a@acme.com', to_addresses: ['nope'] } } }, 'to_addresses'],
    [
      { name: 'p', tools: { get_budget: { max_segments: 2 } } },
      "'max_segments' does not apply to get_budget",
    ],
  ])('rejects %j naming %s', (doc, needle) => {
    expect(() => validatePolicy(doc, catalog)).toThrow(PolicyFileError);
    expect(() => validatePolicy(doc, catalog)).toThrow(needle);
  });
});
