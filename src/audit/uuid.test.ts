import { beforeEach, describe, expect, it } from 'vitest';
import { uuidv7Generator } from './uuid.js';

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// A generator keeps the last millisecond it used (ids never go back in time), and the test files of a worker share
// the process's: each test makes its own, so no id another file made moves its timestamps.
let uuidv7: (now?: number) => string;
beforeEach(() => {
  uuidv7 = uuidv7Generator();
});

describe('uuidv7', () => {
  it('is a version 7, variant 10 UUID carrying its millisecond timestamp', () => {
    const at = Date.UTC(2026, 10, 23, 12, 0, 0, 123);
    const id = uuidv7(at);
    expect(id).toMatch(FORMAT);
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(at);
  });

  it('never goes back in time: an earlier clock reading gets the last millisecond used', () => {
    const at = Date.UTC(2026, 10, 23, 12, 0, 0, 123);
    const first = uuidv7(at);
    const second = uuidv7(at - 5_000);
    expect(second > first).toBe(true);
    expect(parseInt(second.replace(/-/g, '').slice(0, 12), 16)).toBe(at);
  });

  it('stays unique and sorted across many ids in one millisecond, past several refills of its random pool', () => {
    const at = Date.now();
    // 3,000 ids take ~48 KB of random bytes: the 4 KB pool refills about a dozen times.
    const ids = Array.from({ length: 3000 }, () => uuidv7(at));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    for (const id of ids) expect(id).toMatch(FORMAT);
    // The random part differs from id to id (not one pool slice reused).
    expect(new Set(ids.map((id) => id.slice(19))).size).toBe(ids.length);
  });
});
