// Covers jsonOverLimit: depth and item counts measured on the text, strings skipped, each limit named.
import { describe, expect, it } from 'vitest';
import { JSON_LIMITS, jsonOverLimit } from './json-limits.js';

describe('jsonOverLimit', () => {
  it('passes ordinary requests', () => {
    const call = {
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'send_email', arguments: { to: Array.from({ length: 50 }, (_, i) => `a${i}@x.com`) } },
    };
    expect(jsonOverLimit(JSON.stringify(call))).toBeUndefined();
    expect(jsonOverLimit('')).toBeUndefined();
    expect(jsonOverLimit('"just a string"')).toBeUndefined();
  });

  it('takes exactly the depth limit and refuses one more', () => {
    const nest = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    expect(jsonOverLimit(nest(JSON_LIMITS.depth))).toBeUndefined();
    expect(jsonOverLimit(nest(JSON_LIMITS.depth + 1))).toMatch(/nests deeper than 64 arrays or objects/);
  });

  it('refuses more items than the limit, counting arrays and objects alike', () => {
    const array = (n: number) => JSON.stringify(Array.from({ length: n }, () => 1));
    expect(jsonOverLimit(array(JSON_LIMITS.items - 1))).toBeUndefined();
    expect(jsonOverLimit(array(JSON_LIMITS.items + 1))).toMatch(
      /more than 1000 array items and object members/,
    );
    const object = JSON.stringify(Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`k${i}`, i])));
    expect(jsonOverLimit(object)).toMatch(/more than 1000/);
  });

  it('does not count brackets, commas or escaped quotes inside strings', () => {
    const text = JSON.stringify({ s: `${'[,{'.repeat(5000)}\\"` });
    expect(jsonOverLimit(text)).toBeUndefined();
  });
});
