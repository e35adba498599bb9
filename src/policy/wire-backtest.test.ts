import { describe, expect, it } from 'vitest';
import { compileTripwires } from './tripwires.js';
import { createWireBacktest, type BacktestCall } from './wire-backtest.js';

const T0 = Date.parse('2026-12-01T10:00:00Z');
const key = (id = 'k1', agent = 'bot', run_id: string | null = null) => ({ id, agent, run_id });
let n = 0;
const call = (sec: number, o: Partial<BacktestCall> = {}): BacktestCall => ({
  id: `a${++n}`,
  ts: new Date(T0 + sec * 1000),
  key: key(),
  side: 'allowed',
  usd_micros: 1_000_000,
  recipients: [],
  ...o,
});
const backtest = (wires: unknown[]) =>
  createWireBacktest({ name: 'p', tripwires: compileTripwires(wires as never) });

describe('the wire backtest measures what admission measures', () => {
  it('calls_per_minute 3: the 4th call in a sliding minute trips; every later call of the key is stopped', () => {
    const b = backtest([{ when: { calls_per_minute: 3 } }]);
    for (const s of [0, 10, 20, 30, 40, 200]) b.add(call(s));
    const r = b.result();
    expect(r.trips).toHaveLength(1);
    expect(r.trips[0]).toMatchObject({
      wire: 'calls_per_minute',
      scope_kind: 'key',
      scope: 'k1',
      figure: 4,
      limit: 3,
    });
    expect(r.trips[0]!.at).toBe(new Date(T0 + 30_000).toISOString());
    // The tripping call, the one at 40 s and the one at 200 s (paused until someone resumes it).
    expect(r.stopped_calls).toBe(3);
    expect(r.stopped_usd_micros).toBe(3_000_000);
    expect(r.wires[0]!.over).toBe(1);
  });

  it('the window slides: 3 calls a minute apart never trip calls_per_minute 2', () => {
    const b = backtest([{ when: { calls_per_minute: 2 } }]);
    for (const s of [0, 30, 61, 95, 130]) b.add(call(s));
    expect(b.result().trips).toEqual([]);
  });

  it('spend_usd_per_10m counts admitted USD; denials_per_minute counts refusals only; held calls count for neither', () => {
    const b = backtest([{ when: { spend_usd_per_10m: 2.5 } }, { when: { denials_per_minute: 2 } }]);
    b.add(call(0, { usd_micros: 1_000_000 }));
    b.add(call(1, { side: 'none' }));
    b.add(call(2, { side: 'denied' }));
    b.add(call(3, { side: 'denied' }));
    b.add(call(4, { usd_micros: 1_000_000 }));
    b.add(call(5, { usd_micros: 1_000_000, key: key('k2') }));
    b.add(call(6, { usd_micros: 600_000 }));
    const r = b.result();
    expect(r.trips.map((t) => [t.wire, t.scope, t.figure])).toEqual([['spend_usd_per_10m', 'k1', 2_600_000]]);
    b.add(call(7, { side: 'denied', key: key('k2') }));
    b.add(call(8, { side: 'denied', key: key('k2') }));
    b.add(call(9, { side: 'denied', key: key('k2') }));
    expect(b.result().trips.map((t) => [t.wire, t.scope, t.figure])).toEqual([
      ['spend_usd_per_10m', 'k1', 2_600_000],
      ['denials_per_minute', 'k2', 3],
    ]);
  });

  it('distinct_recipients_per_hour per agent counts each recipient once, across the agent’s keys', () => {
    const b = backtest([{ when: { distinct_recipients_per_hour: 3 }, per: 'agent' }]);
    b.add(call(0, { recipients: ['a@x.com', 'b@x.com'], key: key('k1', 'mailer') }));
    b.add(call(1, { recipients: ['a@x.com'], key: key('k2', 'mailer') }));
    b.add(call(2, { recipients: ['c@x.com'], key: key('k2', 'mailer') }));
    expect(b.result().trips).toEqual([]);
    b.add(call(3, { recipients: ['d@x.com'], key: key('k1', 'mailer') }));
    expect(b.result().trips).toMatchObject([{ scope_kind: 'agent', scope: 'mailer', figure: 4 }]);
  });

  it('alert and warn only alert, once per window per scope; shadow records; neither stops a call', () => {
    const b = backtest([
      { when: { calls_per_minute: 1 }, then: 'alert' },
      { when: { calls_per_minute: 1 }, mode: 'shadow' },
    ]);
    for (const s of [0, 1, 2, 3, 70, 71]) b.add(call(s));
    const r = b.result();
    const alerts = r.trips.filter((t) => t.then === 'alert');
    expect(alerts.map((t) => t.at)).toEqual([
      new Date(T0 + 1_000).toISOString(),
      new Date(T0 + 71_000).toISOString(),
    ]);
    expect(r.trips.filter((t) => t.mode === 'shadow')).toHaveLength(4);
    expect(r.stopped_calls).toBe(0);
  });
});
