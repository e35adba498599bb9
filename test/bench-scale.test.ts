// Covers the scale bench (bench/scale.ts) at a tiny size: one replica, 20 agents, the hot cap reached, a run revoked.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { runScale, scaleTable } from '../bench/scale.js';
import type { Result } from '../bench/support.js';
import { freshDatabase, type TestDatabase } from './support/database.js';

// Replicas run bin/leash.js (dist/bundle) and the bare servers dist/bench/scale.js: `npm run build` makes both.
const built = ['../dist/bench/scale.js', '../dist/bundle/main.js'].every((f) =>
  existsSync(fileURLToPath(new URL(f, import.meta.url))),
);

let tdb: TestDatabase;
let results: Result[];

beforeAll(async () => {
  if (!built) throw new Error('dist/ is missing: run `npm run build` first');
  tdb = await freshDatabase(2);
  const url = new URL(inject('adminUrl'));
  url.pathname = `/${tdb.name}`;
  results = await runScale({
    replicas: [1],
    agents: 20,
    periodMs: 200,
    calls: 300,
    databaseUrl: url.toString(),
    maxRunMs: 240_000,
    log: () => undefined,
  });
}, 600_000);

afterAll(async () => {
  await tdb?.close();
});

const run = (server: string) => {
  const r = results.find((x) => x.params.server === server);
  if (!r) throw new Error(`no ${server} result`);
  return r.figures;
};

it('reaches the hot policy’s daily cap during the run and admits nothing over it', () => {
  const f = run('leash');
  expect(f.end).toBe('done');
  expect(f.hot_cap_reached_s).toEqual(expect.any(Number));
  expect(f.overshoot_micros).toBe(0);
  // Reached, not refused early: what the hot policy spent is within one call (a 1-cent refund) of its cap.
  const spent = Number(f.hot_spent_usd) + Number(f.hot_reserved_usd);
  expect(spent).toBeLessThanOrEqual(Number(f.hot_cap_usd));
  expect(spent).toBeGreaterThan(Number(f.hot_cap_usd) - 0.01);
});

it('revokes the runaway run mid-run and admits none of its calls sent after the revoke returned', () => {
  const f = run('leash');
  expect(f.revoked_keys).toBe(3);
  expect(f.runaway_calls_after_revoke).toBeGreaterThanOrEqual(3);
  expect(f.admitted_after_revoke).toBe(0);
  expect(f.db_allowed_after_revoked_at).toBe(0);
  // The only refusals are the cap's and the revoke's: no transport or internal errors.
  expect(
    String(f.refusals)
      .split(' ')
      .map((x) => x.split('=')[0])
      .sort(),
  ).toEqual(['budget_exceeded', 'key_revoked']);
});

it('runs the bare baseline on the same agents and vendors with every call answered', () => {
  const f = run('bare');
  expect(f.end).toBe('done');
  expect(f.refusals).toBe('none');
  expect(Number(f.calls)).toBeGreaterThanOrEqual(300);
  expect(f.vendor_p50_ms).toEqual(expect.any(Number));
  expect(run('leash').ratio_vs_bare).toEqual(expect.any(Number));
});

it('holds one call from every eligible agent at the fakes at once to measure memory per call in flight', () => {
  for (const r of results) {
    expect(r.notes.join('\n')).not.toMatch(/not every held call/);
    expect(r.figures.held_calls).toBe(7);
    expect(r.figures.rss_kb_per_call_in_flight).toEqual(expect.any(Number));
  }
});

it('prints a table of both configurations that fits 80 columns', () => {
  const table = scaleTable(results);
  expect(table).toMatch(/^bare x1 /m);
  expect(table).toMatch(/^leash x1 /m);
  for (const line of table.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
});
