// Covers issue 23 item 2: a vendor that acts and then answers 2xx with a body leash cannot read (not JSON, or JSON
// without the object leash asked for) leaves the call `unknown` with its reservation held, never "succeeded, $0";
// the caller is told the outcome is unknown; reconcile then finds the effect and counts it once. Stripe, Twilio and
// Resend, through the REST door (their SDKs) and over MCP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/pipeline/reconcile.js';
import {
  callOnce,
  startFaultBench,
  POLICY,
  type Door,
  type FaultBench,
  type Vendor,
} from './support/faults.js';
import { keyFor } from './support/governance.js';
import { auditRows, keySpend } from './support/rest.js';

let bench: FaultBench;

beforeAll(async () => {
  bench = await startFaultBench({ timeoutMs: 10_000 });
}, 180_000);

afterAll(async () => {
  await bench?.close();
});

const fakes = (v: Vendor) => (v === 'stripe' ? bench.stripe : v === 'twilio' ? bench.twilio : bench.resend);

const cases: [Vendor, Door, 'garbage_200' | 'empty_200'][] = [];
for (const vendor of ['stripe', 'twilio', 'resend'] as const)
  for (const door of ['rest', 'mcp'] as const)
    for (const mode of ['garbage_200', 'empty_200'] as const) cases.push([vendor, door, mode]);

describe('an answer leash cannot read', () => {
  it.each(cases)(
    '%s through the %s door, %s: the vendor acted once, the caller hears "unknown", the row holds its reservation, and reconcile counts it once',
    async (vendor, door, mode) => {
      const key = await keyFor(bench.tdb.db, { policy: POLICY });
      const applied = fakes(vendor).inject({ mode });
      const cell = await callOnce(bench, key, vendor, door);
      await applied;
      expect(cell.effects()).toBe(1);
      expect(cell.seen.ok).toBe(false);
      expect(cell.seen.unknown).toBe(true);
      // An SDK reading the body itself cannot tell garbage from a lost answer (resend-node says neither apart).
      const unreadable = !(vendor === 'resend' && door === 'mcp' && mode === 'garbage_200');
      expect(cell.seen.code).toBe(unreadable ? 'vendor_unreadable' : 'vendor_unavailable');
      if (door === 'rest') expect(cell.seen.status).toBe(502);
      const [row] = await auditRows(bench.tdb.pool, key.id);
      expect(row).toMatchObject({ decision: 'allowed', outcome: 'unknown', cost_micros: 0 });
      expect(row!.reserved_micros).toBeGreaterThan(0);
      const held = row!.reserved_micros;
      expect(await keySpend(bench.tdb.pool, key.id)).toEqual({ spent: 0, reserved: held });

      const s = await reconcile(bench.deps, { graceSeconds: 0 });
      expect(s.rows.find((r) => r.id === row!.id)?.after).toMatch(/^succeeded/);
      const [after] = await auditRows(bench.tdb.pool, key.id);
      expect(after).toMatchObject({ outcome: 'succeeded', reserved_micros: 0 });
      expect(after!.cost_micros).toBe(held);
      expect(cell.effects()).toBe(1);
      expect(await keySpend(bench.tdb.pool, key.id)).toEqual({ spent: held, reserved: 0 });
    },
  );
});
