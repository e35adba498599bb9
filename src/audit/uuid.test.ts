import { describe, expect, it } from 'vitest';
import { uuidv7 } from './uuid.js';

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('uuidv7', () => {
  it('is a version 7, variant 10 UUID carrying its millisecond timestamp', () => {
    // Later than any id made so far in this process (test files share it): an earlier time would take the last one's.
    const at = Date.now() + 1_000_000;
    const id = uuidv7(at);
    expect(id).toMatch(FORMAT);
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(at);
  });

  it('stays unique and sorted across many ids in one millisecond, past several refills of its random pool', () => {
    const at = Date.now() + 2_000_000;
    // 3,000 ids take ~48 KB of random bytes: the 4 KB pool refills about a dozen times.
    const ids = Array.from({ length: 3000 }, () => uuidv7(at));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    for (const id of ids) expect(id).toMatch(FORMAT);
    // The random part differs from id to id (not one pool slice reused).
    expect(new Set(ids.map((id) => id.slice(19))).size).toBe(ids.length);
  });
});
