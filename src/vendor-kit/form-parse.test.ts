// Covers parseForm: the same FlatForm URLSearchParams gave, and each limit refused by name.
import { describe, expect, it } from 'vitest';
import { decodeFormComponent, FORM_LIMITS, FormLimitError, parseForm } from './form-parse.js';
import type { FlatForm } from './rest-api.js';

/** What the REST door built before: URLSearchParams, a repeated key a list. */
function reference(text: string): FlatForm {
  const out = new Map<string, string | string[]>();
  for (const [k, v] of new URLSearchParams(text)) {
    const had = out.get(k);
    out.set(k, had === undefined ? v : typeof had === 'string' ? [had, v] : [...had, v]);
  }
  return Object.fromEntries(out);
}

describe('parseForm decodes as URLSearchParams does', () => {
  it.each([
    '',
    'a=1',
    'a=1&b=2&a=3',
    'a=1&a=2&a=3&a=4',
    'metadata[order]=42&metadata[note]=hi+there',
    'to=%2B15551234567&body=%E2%82%AC5',
    'bad=%zz&half=%4&end=%',
    'raw=€uro&emoji=%F0%9F%98%80',
    'broken=%E2%82&lone=%FF',
    '&&a=1&&&b=&c&=d&',
    'a==b=c',
    'expand[]=customer&expand[]=charge',
    'x+y=1&x%20y=2',
  ])('%j', (text) => {
    expect(parseForm(text)).toEqual(reference(text));
  });

  it('matches on random forms built from awkward characters', () => {
    const alphabet = [
      'a',
      'b',
      '=',
      '&',
      '%',
      '2',
      'B',
      'F',
      'E',
      '+',
      '[',
      ']',
      '€',
      '%2',
      '%E2%82%AC',
      '%zz',
    ];
    let seed = 42;
    const next = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed);
    for (let n = 0; n < 2000; n++) {
      let text = '';
      const len = next() % 24;
      for (let i = 0; i < len; i++) text += alphabet[next() % alphabet.length];
      expect(parseForm(text), text).toEqual(reference(text));
    }
  });

  it('keeps flat names as one key and a repeated name as a list in the order sent', () => {
    expect(parseForm('metadata[a]=1&metadata[a]=2&amount=5')).toEqual({
      'metadata[a]': ['1', '2'],
      amount: '5',
    });
  });

  it('makes __proto__ an ordinary parameter, never the prototype', () => {
    const form = parseForm('__proto__=x&__proto__=y&constructor=z');
    expect(Object.getPrototypeOf(form)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(form, '__proto__')?.value).toEqual(['x', 'y']);
    expect(form.constructor).toBe('z');
  });

  it('decodes one component like the form decoder', () => {
    expect(decodeFormComponent('a+b%20c%2')).toBe('a b c%2');
  });
});

describe('parseForm limits', () => {
  const limitOf = (text: string) => {
    try {
      parseForm(text);
      return undefined;
    } catch (error) {
      expect(error).toBeInstanceOf(FormLimitError);
      return error as FormLimitError;
    }
  };

  it('takes exactly the limits and refuses one more, naming the limit', () => {
    const params = (n: number) => Array.from({ length: n }, (_, i) => `p${i}=1`).join('&');
    expect(limitOf(params(FORM_LIMITS.params))).toBeUndefined();
    const over = limitOf(params(FORM_LIMITS.params + 1));
    expect(over?.limit).toBe('params');
    expect(over?.message).toMatch(/more than 1000 parameters/);

    const repeats = (n: number) => Array.from({ length: n }, () => `m[a]=1`).join('&');
    expect(limitOf(repeats(FORM_LIMITS.repeats))).toBeUndefined();
    const repeated = limitOf(repeats(FORM_LIMITS.repeats + 1));
    expect(repeated?.limit).toBe('repeats');
    expect(repeated?.message).toBe("parameter 'm[a]' is repeated more than 100 times (leash's limit)");

    expect(limitOf(`${'k'.repeat(FORM_LIMITS.keyChars)}=1`)).toBeUndefined();
    const long = limitOf(`${'k'.repeat(FORM_LIMITS.keyChars + 1)}=1`);
    expect(long?.limit).toBe('keyChars');
    expect(long?.message).toMatch(/longer than 200 characters/);
    expect(long?.message.length).toBeLessThan(150);

    expect(limitOf(`a${'[x]'.repeat(FORM_LIMITS.depth)}=1`)).toBeUndefined();
    const deep = limitOf(`a${'[x]'.repeat(FORM_LIMITS.depth + 1)}=1`);
    expect(deep?.limit).toBe('depth');
    expect(deep?.message).toMatch(/more than 8 brackets deep/);
  });

  it('counts a decoded name: 200 percent-encoded characters are within the limit', () => {
    expect(limitOf(`${'%41'.repeat(FORM_LIMITS.keyChars)}=1`)).toBeUndefined();
  });

  it('refuses a 1 MB body of one repeated name at the repeats limit', () => {
    const text = `payment_intent=pi_x&amount=1${'&m[a]=1'.repeat(150_000)}`;
    expect(limitOf(text)?.limit).toBe('repeats');
  });

  it('refuses a 1 MB body of distinct names at the parameter limit', () => {
    const text = Array.from({ length: 150_000 }, (_, i) => `k${i}=1`).join('&');
    expect(limitOf(text)?.limit).toBe('params');
  });

  it('takes custom limits', () => {
    expect(() => parseForm('a=1&b=2', { ...FORM_LIMITS, params: 1 })).toThrow(/more than 1 parameters/);
  });
});
