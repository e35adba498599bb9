// Tripwires in a policy file: what compiles (every default filled in, spend in micro-USD), what is refused with the
// path of the field at fault, the scope each wire measures for a key, and who a call reaches.
import { describe, expect, it } from 'vitest';
import { compilePolicy, PolicyFileError, validatePolicy, type ToolRuleSpec } from './compile.js';
import { recipientsOf, tripwiresFor } from './tripwires.js';

const catalog = new Map<string, ToolRuleSpec>([['get_budget', { rules: [] }]]);
const doc = (tripwires: unknown) => ({ name: 'wired', tools: { get_budget: null }, tripwires });
const compiled = (tripwires: unknown) => compilePolicy(validatePolicy(doc(tripwires), catalog), 1).tripwires;

describe('tripwires in a policy', () => {
  it('compiles the issue’s four wires with their defaults: per key, pause, enforce, the metric’s window, USD in micros', () => {
    expect(
      compiled([
        { when: { calls_per_minute: 60 }, then: 'pause' },
        { when: { denials_per_minute: 10 }, then: 'pause' },
        { when: { spend_usd_per_10m: 50.25 }, then: 'pause', mode: 'warn' },
        { when: { distinct_recipients_per_hour: 200 }, per: 'agent', then: 'alert' },
      ]),
    ).toEqual([
      {
        name: 'calls_per_minute',
        metric: 'calls_per_minute',
        limit: 60,
        windowSeconds: 60,
        per: 'key',
        then: 'pause',
        mode: 'enforce',
      },
      {
        name: 'denials_per_minute',
        metric: 'denials_per_minute',
        limit: 10,
        windowSeconds: 60,
        per: 'key',
        then: 'pause',
        mode: 'enforce',
      },
      {
        name: 'spend_usd_per_10m',
        metric: 'spend_usd_per_10m',
        limit: 50_250_000,
        windowSeconds: 600,
        per: 'key',
        then: 'pause',
        mode: 'warn',
      },
      {
        name: 'distinct_recipients_per_hour_agent',
        metric: 'distinct_recipients_per_hour',
        limit: 200,
        windowSeconds: 3_600,
        per: 'agent',
        then: 'alert',
        mode: 'enforce',
      },
    ]);
  });

  it('keeps a policy without tripwires as written (none compiled)', () => {
    const v = validatePolicy({ name: 'plain', tools: { get_budget: null } }, catalog);
    expect(v).not.toHaveProperty('tripwires');
    expect(compilePolicy(v, 1).tripwires).toEqual([]);
  });

  it.each([
    [
      'two metrics in one wire',
      [{ when: { calls_per_minute: 5, denials_per_minute: 5 } }],
      /give exactly one of calls_per_minute, denials_per_minute, spend_usd_per_10m, distinct_recipients_per_hour\n {2}→ at tripwires\[0\]\.when/,
    ],
    ['no metric', [{ when: {} }], /give exactly one of .*\n {2}→ at tripwires\[0\]\.when/],
    [
      'an unknown metric',
      [{ when: { calls_per_hour: 5 } }],
      /calls_per_hour.*\n {2}→ at tripwires\[0\]\.when/,
    ],
    [
      'a fractional call count',
      [{ when: { calls_per_minute: 2.5 } }],
      /expected a whole number\n {2}→ at tripwires\[0\]\.when\.calls_per_minute/,
    ],
    ['a zero line', [{ when: { denials_per_minute: 0 } }], /→ at tripwires\[0\]\.when\.denials_per_minute/],
    [
      'a negative spend',
      [{ when: { spend_usd_per_10m: -1 } }],
      /→ at tripwires\[0\]\.when\.spend_usd_per_10m/,
    ],
    [
      'spend finer than a micro-dollar',
      [{ when: { spend_usd_per_10m: 0.0000001 } }],
      /at most 6 decimal places/,
    ],
    ['an unknown scope', [{ when: { calls_per_minute: 5 }, per: 'tenant' }], /→ at tripwires\[0\]\.per/],
    ['an unknown action', [{ when: { calls_per_minute: 5 }, then: 'delete' }], /→ at tripwires\[0\]\.then/],
    ['an unknown mode', [{ when: { calls_per_minute: 5 }, mode: 'loud' }], /→ at tripwires\[0\]\.mode/],
    ['an unknown key', [{ when: { calls_per_minute: 5 }, after: '1m' }], /after.*\n {2}→ at tripwires\[0\]/],
    ['a bad name', [{ name: 'Big Wire', when: { calls_per_minute: 5 } }], /→ at tripwires\[0\]\.name/],
    [
      'two wires with one name',
      [{ when: { calls_per_minute: 5 } }, { when: { calls_per_minute: 9 } }],
      /tripwire name 'calls_per_minute' is already used by tripwires\[0\]; give each wire its own name\n {2}→ at tripwires\[1\]\.name/,
    ],
    [
      'more than 20 wires',
      Array.from({ length: 21 }, (_, i) => ({ name: `w${i}`, when: { calls_per_minute: 5 } })),
      /at most 20 tripwires\n {2}→ at tripwires/,
    ],
    ['not a list', { when: { calls_per_minute: 5 } }, /→ at tripwires/],
  ])('refuses %s, naming the field', (_what, tripwires, message) => {
    expect(() => validatePolicy(doc(tripwires), catalog)).toThrow(PolicyFileError);
    expect(() => validatePolicy(doc(tripwires), catalog)).toThrow(message);
  });

  it('names a wire per run, agent or policy after its scope, so the same metric can be measured at each', () => {
    const wires = compiled([
      { when: { calls_per_minute: 60 } },
      { when: { calls_per_minute: 600 }, per: 'run' },
      { when: { calls_per_minute: 6000 }, per: 'policy' },
    ]);
    expect(wires.map((w) => w.name)).toEqual([
      'calls_per_minute',
      'calls_per_minute_run',
      'calls_per_minute_policy',
    ]);
  });
});

describe('the scope a wire measures for a key', () => {
  const policy = compilePolicy(
    validatePolicy(
      doc([
        { when: { calls_per_minute: 1 } },
        { when: { calls_per_minute: 2 }, per: 'run' },
        { when: { calls_per_minute: 3 }, per: 'agent' },
        { when: { calls_per_minute: 4 }, per: 'policy', then: 'revoke', mode: 'shadow' },
      ]),
      catalog,
    ),
    1,
  );

  it('is the key, its run, its agent or the policy', () => {
    const checks = tripwiresFor(policy, { id: 'k1', agent: 'bot', run_id: 'r1' });
    expect(checks.map((c) => [c.wire, c.kind, c.id, c.limit, c.then, c.mode, c.policy])).toEqual([
      ['calls_per_minute', 'key', 'k1', 1, 'pause', 'enforce', 'wired'],
      ['calls_per_minute_run', 'run', 'r1', 2, 'pause', 'enforce', 'wired'],
      ['calls_per_minute_agent', 'agent', 'bot', 3, 'pause', 'enforce', 'wired'],
      ['calls_per_minute_policy', 'policy', 'wired', 4, 'revoke', 'shadow', 'wired'],
    ]);
  });

  it('is the key itself for a per-run wire when the key has no run', () => {
    const [, run] = tripwiresFor(policy, { id: 'k2', agent: 'bot', run_id: null });
    expect(run).toMatchObject({ per: 'run', kind: 'key', id: 'k2' });
  });
});

describe('who a call reaches', () => {
  it('is its recipients, each once (email addresses case-folded), else its customer, else no one', () => {
    expect(recipientsOf({ recipients: ['A@acme.com', 'a@acme.com', '+15550001111'] })).toEqual([
      'a@acme.com',
      '+15550001111',
    ]);
    expect(recipientsOf({ customer: 'cus_A' })).toEqual(['cus_A']);
    expect(recipientsOf({ customer: null })).toEqual([]);
    expect(recipientsOf(undefined)).toEqual([]);
  });

  it('keeps at most 100, each at most 256 characters and without control characters', () => {
    const many = recipientsOf({ recipients: Array.from({ length: 150 }, (_, i) => `r${i}@x.io`) });
    expect(many).toHaveLength(100);
    const [long] = recipientsOf({ recipients: [`${'x'.repeat(300)}\u0000`] });
    expect(long).toHaveLength(256);
    expect(recipientsOf({ recipients: ['a\u0000b'] })).toEqual(['ab']);
  });
});
