// Covers the closed parameter list of a REST endpoint: checked fields and listed passthrough go by; another form of a
// checked field and an unlisted parameter are refused, naming them; a list that reopens a checked field fails at load.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { checkedFields, closedParams } from './closed-params.js';

const refund = closedParams({
  operation: 'POST /v1/refunds',
  checked: ['payment_intent', 'amount'],
  passthrough: ['reason', 'metadata[*]', 'expand[*]'],
});
const issuesOf = (value: unknown) =>
  (refund.safeParse(value).error?.issues ?? []).map((i) => [i.path.join('.'), i.message]);

describe('closedParams', () => {
  it.each([
    [{ payment_intent: 'pi_1', amount: '100' }],
    [{ payment_intent: 'pi_1', reason: 'duplicate', 'metadata[order]': '42', 'metadata[a][b]': 'x' }],
    [{ payment_intent: 'pi_1', 'expand[]': ['charge', 'customer'], 'expand[0]': 'charge' }],
  ])('lets %j through', (value) => {
    expect(issuesOf(value)).toEqual([]);
  });

  it.each(['amount[]', 'amount[x]', 'Amount', 'AMOUNT[0]', 'payment_intent[id]'])(
    'refuses %s as another form of a checked field',
    (key) => {
      const field = key.toLowerCase().split('[')[0];
      expect(issuesOf({ payment_intent: 'pi_1', [key]: '1' })).toEqual([
        [key, `another form of ${field}, which leash checks: send ${field} itself, once`],
      ]);
    },
  );

  it.each(['customer', 'reason[]', 'metadata', 'expand', 'Reason', ''])(
    'refuses %j as not listed, saying what is',
    (key) => {
      expect(issuesOf({ payment_intent: 'pi_1', [key]: 'x' })).toEqual([
        [
          key,
          'not a parameter leash forwards on POST /v1/refunds (expected one of: payment_intent, amount, reason, metadata[…], expand[…])',
        ],
      ]);
    },
  );

  it('says a read with no listed query parameters takes none', () => {
    const none = closedParams({ operation: 'GET /emails/{id}', checked: [], passthrough: [] });
    expect(none.safeParse({ include: 'raw' }).error?.issues[0]?.message).toBe(
      'not a parameter leash forwards on GET /emails/{id} (it takes none)',
    );
  });

  it('refuses at load a passthrough entry that is another form of a checked field', () => {
    expect(() =>
      closedParams({ operation: 'POST /x', checked: ['amount'], passthrough: ['amount[*]'] }),
    ).toThrow(/'amount\[\*\]' is another form of the checked field 'amount'/);
  });
});

describe('checkedFields', () => {
  it('reads the fields of an object schema, refined or transformed', () => {
    const o = z.looseObject({ a: z.string(), b: z.string().optional() });
    expect(checkedFields(o.refine(() => true))).toEqual(['a', 'b']);
    expect(checkedFields(o.transform((v) => v))).toEqual(['a', 'b']);
  });

  it('refuses a body schema whose fields it cannot read', () => {
    expect(() => checkedFields(z.record(z.string(), z.string()))).toThrow(/object schema/);
  });
});
