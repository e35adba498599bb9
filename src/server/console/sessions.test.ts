// Covers the console's in-memory sessions: idle and absolute expiry, eviction past the cap, ending streams, and
// ending a removed operator's sessions.
import { describe, expect, it } from 'vitest';
import { createSessionStore } from './sessions.js';

describe('console sessions', () => {
  it('finds a session by its id and not by anything else', () => {
    const store = createSessionStore();
    const s = store.create();
    expect(store.get(s.id)).toBe(s);
    expect(store.get(s.csrf)).toBeUndefined();
    expect(store.get(undefined)).toBeUndefined();
    expect(s.id).not.toBe(s.csrf);
    expect(s.id).toMatch(/^[\w-]{43}$/);
  });

  it('signs out after the idle time, and after the maximum age however busy', () => {
    let now = 0;
    const store = createSessionStore({ idleMs: 100, maxAgeMs: 250, now: () => now });
    const idle = store.create();
    now = 101;
    expect(store.get(idle.id)).toBeUndefined();
    const busy = store.create();
    for (now = 150; now <= 350; now += 50) expect(store.get(busy.id)).toBe(busy);
    now = 352;
    expect(store.get(busy.id)).toBeUndefined();
  });

  it('evicts the oldest sign-in past the cap and ends what it had open', () => {
    const store = createSessionStore({ maxSessions: 2 });
    const first = store.create();
    let ended = 0;
    store.onEnd(first.id, () => ended++);
    store.create();
    store.create();
    expect(store.get(first.id)).toBeUndefined();
    expect(ended).toBe(1);
    expect(store.size).toBe(2);
  });

  it('runs the end callbacks on sign-out, except cancelled ones', () => {
    const store = createSessionStore();
    const s = store.create();
    const calls: string[] = [];
    store.onEnd(s.id, () => calls.push('a'));
    const cancel = store.onEnd(s.id, () => calls.push('b'));
    cancel();
    store.destroy(s.id);
    expect(calls).toEqual(['a']);
    expect(store.get(s.id)).toBeUndefined();
  });

  it('knows who signed in, and ends every session of a removed operator and no other', () => {
    const store = createSessionStore();
    const admin = store.create();
    const a1 = store.create({ operator: 'alice', operatorId: 'id-a' });
    const a2 = store.create({ operator: 'alice', operatorId: 'id-a' });
    const b = store.create({ operator: 'bob', operatorId: 'id-b' });
    expect([admin.operator, admin.operatorId, a1.operator]).toEqual(['admin', null, 'alice']);
    expect(store.operatorIds().sort()).toEqual(['id-a', 'id-b']);
    let ended = 0;
    store.onEnd(a2.id, () => ended++);
    expect(store.endOperators(['id-a'])).toBe(2);
    expect([store.get(a1.id), store.get(a2.id)]).toEqual([undefined, undefined]);
    expect(ended).toBe(1);
    expect([store.get(b.id), store.get(admin.id)]).toEqual([b, admin]);
    expect(store.operatorIds()).toEqual(['id-b']);
  });
});
