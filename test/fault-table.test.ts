// Covers every vendor fault mode through both doors, for Stripe, Twilio and Resend: what the caller sees, the row's
// state, and after `reconcile`, with effects at the fake and audit rows matching one to one and caps counting exactly
// the money moved. Prints the table (fault mode → caller sees → row → after reconcile) that issue 23 asks for.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../src/pipeline/reconcile.js';
import type { FaultMode } from '../src/vendor-kit/fake-server.js';
import {
  callOnce,
  startFaultBench,
  POLICY,
  type Cell,
  type Door,
  type FaultBench,
  type Vendor,
} from './support/faults.js';
import { keyFor } from './support/governance.js';
import { auditRows, keySpend, type AuditRowView } from './support/rest.js';

/** Long enough for any answer on a busy machine; the hang modes wait it out once per cell. */
const VENDOR_TIMEOUT_MS = 3_000;
let bench: FaultBench;

beforeAll(async () => {
  bench = await startFaultBench({ timeoutMs: VENDOR_TIMEOUT_MS });
}, 180_000);

afterAll(async () => {
  await bench?.close();
});

const MODES: FaultMode[] = [
  'hang',
  'hang_acted',
  'error_500',
  'error_500_acted',
  'garbage_200',
  'empty_200',
  'reset_acted',
  'rate_limited',
];
const VENDORS: Vendor[] = ['stripe', 'twilio', 'resend'];
const DOORS: Door[] = ['rest', 'mcp'];
const ACTED = new Set<FaultMode>([
  'hang_acted',
  'error_500_acted',
  'garbage_200',
  'empty_200',
  'reset_acted',
]);

interface Result {
  mode: FaultMode;
  vendor: Vendor;
  door: Door;
  cell: Cell;
  effectsBefore: number;
  row: AuditRowView;
  after?: AuditRowView;
}

const fakes = (v: Vendor) => (v === 'stripe' ? bench.stripe : v === 'twilio' ? bench.twilio : bench.resend);
const usd = (micros: number) => `$${(micros / 1e6).toFixed(micros % 10_000 ? 4 : 2)}`;
const rowText = (r: AuditRowView) =>
  r.metadata.replay_of
    ? 'replay ($0)'
    : r.outcome === 'succeeded'
      ? `succeeded, ${usd(r.cost_micros)}`
      : r.outcome === 'unknown'
        ? `unknown, ${usd(r.reserved_micros)} held`
        : `${r.outcome}, $0`;
function seenText(c: Cell, door: Door): string {
  const s = c.seen;
  if (s.ok) return door === 'rest' ? `${s.status ?? ''} ok` : 'ok';
  const parts = [door === 'rest' ? `${s.status ?? '?'} ${s.code ?? ''}` : (s.code ?? '')];
  if (s.unknown) parts.push('"outcome unknown, do not repeat"');
  if (s.retryAfter !== null)
    parts.push(door === 'rest' ? `Retry-After: ${s.retryAfter}` : `retry_after_seconds ${s.retryAfter}`);
  // twilio-node keeps no response headers: vendor-rate-limits.test.ts reads the same answer's Retry-After by hand.
  else if (s.status === 429) parts.push('Retry-After header (not kept by the SDK)');
  return parts.join(', ');
}

/** One fault through one door: a fresh key (so its rows and spend are this cell's alone) and arguments of its own. */
async function runCell(mode: FaultMode, vendor: Vendor, door: Door): Promise<Result> {
  const key = await keyFor(bench.tdb.db, { policy: POLICY });
  const applied = fakes(vendor).inject({
    mode,
    ...(mode === 'rate_limited' ? { retryAfterSeconds: 11 } : {}),
  });
  const cell = await callOnce(bench, key, vendor, door);
  await applied;
  await bench.deps.settler.flush();
  const rows = await auditRows(bench.tdb.pool, key.id);
  return { mode, vendor, door, cell, effectsBefore: cell.effects(), row: rows[0]! };
}

const results: Result[] = [];

describe('every fault mode, through both doors, for every vendor', () => {
  it('keeps effects and rows one to one, before and after reconcile, and caps count exactly the money moved', async () => {
    // Vendors side by side (each has its own fake), cells of one vendor one after another.
    await Promise.all(
      VENDORS.map(async (vendor) => {
        for (const mode of MODES) for (const door of DOORS) results.push(await runCell(mode, vendor, door));
      }),
    );
    expect(results).toHaveLength(MODES.length * VENDORS.length * DOORS.length);

    for (const r of results) {
      const where = `${r.vendor} ${r.door} ${r.mode}: ${JSON.stringify(r.cell.seen)} ${JSON.stringify(r.row)}`;
      expect(r.effectsBefore, where).toBeLessThanOrEqual(1);
      if (!ACTED.has(r.mode)) expect(r.effectsBefore, where).toBe(0);
      expect(r.row.decision, where).toBe('allowed');
      if (r.mode === 'rate_limited') {
        expect(r.cell.seen, where).toMatchObject({ ok: false, unknown: false });
        expect(r.row, where).toMatchObject({ outcome: 'failed', reserved_micros: 0, cost_micros: 0 });
        if (r.door === 'mcp' || r.vendor !== 'twilio') expect(r.cell.seen.retryAfter, where).toBe('11');
        continue;
      }
      if (r.cell.seen.ok) {
        // Only a vendor's own SDK retry (same key) can turn a fault into an answer: then it is the one effect.
        expect(r.effectsBefore, where).toBe(1);
        expect(r.row.outcome, where).toBe('succeeded');
        continue;
      }
      // Every other fault leaves the outcome unknown: said so, reservation held, nothing counted yet.
      expect(r.cell.seen.unknown, where).toBe(true);
      expect(r.row.outcome, where).toBe('unknown');
      expect(r.row.reserved_micros, where).toBeGreaterThan(0);
      expect(r.row.cost_micros, where).toBe(0);
    }

    await reconcile(bench.deps, { graceSeconds: 0 });
    for (const r of results) {
      const [after] = await auditRows(bench.tdb.pool, r.cell.key.id);
      r.after = after!;
      const effects = r.cell.effects();
      const where = `${r.vendor} ${r.door} ${r.mode} after reconcile: effects ${effects} ${JSON.stringify(after)}`;
      expect(effects, where).toBeLessThanOrEqual(1);
      const spend = await keySpend(bench.tdb.pool, r.cell.key.id);
      if (after!.outcome === 'succeeded') {
        // One effect, counted once: its cost spent, nothing held.
        expect(effects, where).toBe(1);
        expect(after!.cost_micros, where).toBeGreaterThan(0);
        expect(spend, where).toEqual({ spent: after!.cost_micros, reserved: 0 });
      } else if (after!.outcome === 'unknown') {
        // Still unknown (a vendor that can neither replay nor find a call it never made): held, never counted.
        expect(effects, where).toBe(0);
        expect(spend, where).toEqual({ spent: 0, reserved: after!.reserved_micros });
      } else {
        expect(after!.outcome, where).toBe('failed');
        expect(effects, where).toBe(0);
        expect(spend, where).toEqual({ spent: 0, reserved: 0 });
      }
    }

    const lines = [
      '| fault mode | vendor | REST door: caller sees | MCP: caller sees | row (REST / MCP) | after reconcile (REST / MCP) | effects at the vendor (REST / MCP) |',
      '|---|---|---|---|---|---|---|',
    ];
    for (const mode of MODES)
      for (const vendor of VENDORS) {
        const [rest, mcp] = DOORS.map((d) =>
          results.find((r) => r.mode === mode && r.vendor === vendor && r.door === d)!,
        );
        lines.push(
          `| ${mode} | ${vendor} | ${seenText(rest!.cell, 'rest')} | ${seenText(mcp!.cell, 'mcp')} | ` +
            `${rowText(rest!.row)} / ${rowText(mcp!.row)} | ${rowText(rest!.after!)} / ${rowText(mcp!.after!)} | ` +
            `${rest!.cell.effects()} / ${mcp!.cell.effects()} |`,
        );
      }
    console.log(`\n${lines.join('\n')}\n`);
  }, 240_000);
});
