// Covers the alerts' one-line texts: money is "reserved", "held" is only ever a call waiting for a person, and an
// operator's action names who did it and through which door.
import { describe, expect, it } from 'vitest';
import { alertText } from './alert-events.js';

describe('alert texts', () => {
  it('says the money of calls with an unknown outcome stays reserved, never held', () => {
    const text = alertText({
      type: 'unknown_outcomes',
      rows: 2,
      oldest: '2026-12-06T02:00:00.000Z',
      older_than_seconds: 900,
      audit_ids: ['0193a8e0-0000-7000-8000-000000000001', '0193a8e0-0000-7000-8000-000000000002'],
    });
    expect(text).toContain('the money they reserved stays reserved');
    expect(text).not.toMatch(/\bheld\b/);
  });

  it('names the operator and the door of an action', () => {
    expect(
      alertText({
        type: 'key_revoked',
        key_ids: ['abcdefghijkl'],
        by: 'alice',
        via: 'console',
        reason: 'loop',
      }),
    ).toBe(':lock: leash: alice revoked 1 key(s) via the console: abcdefghijkl (loop).');
    expect(
      alertText({
        type: 'operator_action',
        action: 'approval.approve',
        target: 'approval:0193a8e0',
        by: 'bo',
        via: 'admin_api',
      }),
    ).toBe(':memo: leash: bo approved approval:0193a8e0 via the admin API.');
  });
});
