// Covers shadow policies (issue 27 item 2) through the real pipeline on two replicas (two pools, one database) with the
// real Twilio SDK against its fake: `policies apply --shadow` installs a version every live call is also decided by,
// deciding nothing; the audit row records the shadow's decision (rules in process; caps and wires from the same
// admission figures, nothing reserved, paused or alerted for it); `policies shadow report` lists exactly the calls it
// disagrees with; `/metrics` counts them (pipeline events); `policies promote` enforces it; `shadow drop` removes it.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DbHandle } from '../src/db/database.js';
import { SYSTEM_ACTOR } from '../src/audit/operator-actions.js';
import { validatePolicy } from '../src/policy/compile.js';
import { applyPolicy, changeShadow, PolicyStateError } from '../src/policies/store.js';
import type { PipelineDeps, PipelineEvent, ToolCallResult } from '../src/pipeline/run-tool.js';
import { ruleSpecs, type Catalog, type VendorSpec } from '../src/pipeline/tool.js';
import { twilioVendor } from '../tools/twilio/client.js';
import { startTwilioFake, type TwilioFake } from '../tools/twilio/sandbox.js';
import { sendSms } from '../tools/twilio/send-sms.js';
import { getBudget } from '../tools/leash/get-budget.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { keyFor, pipelineFor, readAuditRow, settledRun, testConfig } from './support/governance.js';
import { cli } from './support/run-cli.js';

const catalog: Catalog = {
  tools: new Map([
    [sendSms.name, sendSms],
    [getBudget.name, getBudget],
  ]),
  vendors: new Map<string, VendorSpec>([['twilio', twilioVendor]]),
};
const SMS = { from: '+15550001111', to_prefixes: ['+1'], max_segments: 3 };
/** What one one-segment SMS to +1 is admitted at (the price sheet's estimate). */
const SMS_MICROS = 8_300;

let tdb: TestDatabase;
let other: DbHandle;
let twilio: TwilioFake;
let a: PipelineDeps;
let b: PipelineDeps;
let home: string;
let env: Record<string, string>;
const events: PipelineEvent[] = [];
const leash = (...argv: string[]) => cli(argv, env);

beforeAll(async () => {
  tdb = await freshDatabase(8);
  other = await tdb.openPool(8);
  twilio = await startTwilioFake();
  const config = testConfig({
    TWILIO_ACCOUNT_SID: `AC${randomBytes(16).toString('hex')}`,
    TWILIO_AUTH_TOKEN: randomBytes(16).toString('hex'),
    LEASH_TWILIO_BASE_URL: twilio.url,
  });
  a = pipelineFor(tdb.db, catalog, config);
  b = pipelineFor(other.db, catalog, config);
  for (const d of [a, b]) d.onEvent = (e) => events.push(e);
  home = await mkdtemp(join(tmpdir(), 'leash-shadow-'));
  env = { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' };
});

afterAll(async () => {
  await Promise.all([a.settler.flush(), b.settler.flush()]);
  await other.close();
  await twilio.close();
  await tdb.close();
  await rm(home, { recursive: true, force: true });
});

let serial = 0;
const doc = (name: string, body: Record<string, unknown>) =>
  validatePolicy({ name, ...body }, ruleSpecs(catalog));

/** A policy of its own (enforced version 1) with a shadow (version 2); both replicas read the shadow before calls. */
async function shadowed(enforced: Record<string, unknown>, shadow: Record<string, unknown>) {
  const name = `shadow-${++serial}`;
  await applyPolicy(tdb.db, doc(name, enforced));
  const s = await applyPolicy(tdb.db, doc(name, shadow), SYSTEM_ACTOR, { shadow: true });
  expect(s).toMatchObject({ version: 2, created: true, shadow: true });
  await Promise.all([a.shadows!.refresh(), b.shadows!.refresh()]);
  return name;
}

let numbers = 0;
const number = (prefix: string) => `${prefix}${String(++numbers).padStart(4, '0')}`;
const sms = (to: string) => ({ to, body: 'Your order shipped.' });
const code = (r: ToolCallResult) => (r.ok ? 'ok' : r.failure.code);
const auditId = (r: ToolCallResult) => (r.ok ? r.audit_id : r.failure.audit_id);
const shadowOfRow = async (r: ToolCallResult) =>
  (await readAuditRow(tdb.db, auditId(r))).metadata as { shadow?: Record<string, unknown> };

describe('a shadow version decides every live call beside the enforced one, deciding nothing', () => {
  it('a shadow that tightens the recipient allowlist: the calls go on; the report lists exactly those it would deny; promoted, they are denied', async () => {
    const name = await shadowed(
      { tools: { send_sms: SMS } },
      { tools: { send_sms: { ...SMS, to_prefixes: ['+1555777'] } } },
    );
    const key = await keyFor(tdb.db, { policy: name, agent: `bot-${name}` });
    const inside = [number('+1555777'), number('+1555777'), number('+1555777')];
    const outside = [number('+1555888'), number('+1555888'), number('+1555888'), number('+1555888')];
    const calls = [...inside, ...outside].map((to, i) => ({ to, i }));
    const results = new Map<string, ToolCallResult>();
    for (const c of calls)
      results.set(c.to, await settledRun(c.i % 2 ? b : a, key.key, 'send_sms', sms(c.to)));

    // Every call went through: the shadow decides nothing.
    expect([...results.values()].map(code)).toEqual(calls.map(() => 'ok'));
    expect(twilio.received.filter((r) => [...inside, ...outside].includes(String(r.form?.To)))).toHaveLength(
      7,
    );
    for (const to of inside)
      expect((await shadowOfRow(results.get(to)!)).shadow).toEqual({
        version: 2,
        decision: 'allowed',
        code: null,
        // Neither version has caps or wires: nothing was measured apart at admission.
        caps_same: true,
        wires_same: true,
      });
    for (const to of outside)
      expect((await shadowOfRow(results.get(to)!)).shadow).toEqual({
        version: 2,
        decision: 'denied',
        code: 'recipient_not_allowed',
      });

    const report = await leash('policies', 'shadow', 'report', name, '--json');
    expect(report.code).toBe(1);
    const r = JSON.parse(report.stdout) as {
      compared: number;
      agreed: number;
      disagreements: Record<string, number>;
      usd_refused_micros: number;
      changes: { id: string; was: string; now: string; disagreement: string }[];
      shadow_version: number;
    };
    expect(r).toMatchObject({
      compared: 7,
      agreed: 3,
      shadow_version: 2,
      disagreements: { now_denied: 4, now_allowed: 0, now_held: 0, now_tripped: 0 },
      usd_refused_micros: 4 * SMS_MICROS,
    });
    expect(r.changes.map((c) => c.id).sort()).toEqual(outside.map((to) => auditId(results.get(to)!)).sort());
    expect(new Set(r.changes.map((c) => `${c.was}→${c.now}`))).toEqual(
      new Set(['allowed→recipient_not_allowed']),
    );
    const text = await cli(['policies', 'shadow', 'report', name], { ...env, COLUMNS: '80' });
    expect(text.stdout).toContain('now denied    4');
    for (const line of text.stdout.split('\n')) expect(line.length).toBeLessThanOrEqual(80);

    // The metric's events: one per disagreement, on whichever replica decided the call.
    const disagreements = events.filter(
      (e) => e.type === 'shadow' && e.policy === name && e.disagreement === 'now_denied',
    );
    expect(disagreements).toHaveLength(4);

    const promoted = await leash('policies', 'promote', name, '--by', 'alice', '--json');
    expect(promoted.code).toBe(0);
    expect(JSON.parse(promoted.stdout)).toEqual({ name, from: 1, to: 2, shadow: 2 });
    // The next calls, on both replicas, are decided by version 2: the ones it would have denied are denied.
    const after = [
      await settledRun(a, key.key, 'send_sms', sms(number('+1555888'))),
      await settledRun(b, key.key, 'send_sms', sms(number('+1555888'))),
      await settledRun(b, key.key, 'send_sms', sms(number('+1555777'))),
    ];
    expect(after.map(code)).toEqual(['recipient_not_allowed', 'recipient_not_allowed', 'ok']);
    expect((await readAuditRow(tdb.db, auditId(after[0]!))).policy_version).toBe(2);
    const action = await tdb.db
      .selectFrom('operator_actions')
      .select(['actor', 'action', 'detail'])
      .where('target', '=', `policy:${name}`)
      .where('action', '=', 'policy.promote')
      .executeTakeFirstOrThrow();
    expect(action).toMatchObject({ actor: 'alice', detail: { version: 2, from: 1, shadow: 2 } });
    expect(await leash('policies', 'promote', name)).toMatchObject({ code: 3 });
  });

  it("a shadow's tighter daily cap is measured from the enforced reservation figures: later calls would be refused budget_exceeded; nothing is reserved twice", async () => {
    const name = await shadowed(
      { limits: { per_key_daily_usd: 10 }, tools: { send_sms: SMS } },
      // Room for two SMS (2 × 0.0083), not three.
      { limits: { per_key_daily_usd: 0.02 }, tools: { send_sms: SMS } },
    );
    const key = await keyFor(tdb.db, { policy: name, agent: `bot-${name}` });
    const results: ToolCallResult[] = [];
    for (let i = 0; i < 4; i++)
      results.push(await settledRun(i % 2 ? b : a, key.key, 'send_sms', sms(number('+1555300'))));
    expect(results.map(code)).toEqual(['ok', 'ok', 'ok', 'ok']);
    const shadows = await Promise.all(results.map(async (r) => (await shadowOfRow(r)).shadow));
    expect(shadows.map((s) => s?.decision)).toEqual(['allowed', 'allowed', 'denied', 'denied']);
    expect(shadows[2]).toMatchObject({ code: 'budget_exceeded', scope: `key:${key.id}` });
    // One reservation per call, the enforced one's: the window holds 4 SMS, not more.
    const window = await tdb.db
      .selectFrom('spend_windows')
      .select((eb) => eb(eb.ref('spent_micros'), '+', eb.ref('reserved_micros')).as('used'))
      .where('scope', '=', `key:${key.id}`)
      .where('kind', '=', 'usd_day')
      .executeTakeFirstOrThrow();
    expect(Number(window.used)).toBe(4 * SMS_MICROS);
  });

  it("30 concurrent calls on two replicas (batched admissions): exactly as many shadow-allowed as the shadow's cap holds", async () => {
    const name = await shadowed(
      { limits: { per_key_daily_usd: 10 }, tools: { send_sms: SMS } },
      // Room for exactly 10 SMS.
      { limits: { per_key_daily_usd: (10 * SMS_MICROS) / 1e6 }, tools: { send_sms: SMS } },
    );
    const key = await keyFor(tdb.db, { policy: name, agent: `bot-${name}` });
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        settledRun(i % 2 ? b : a, key.key, 'send_sms', sms(number('+1555600'))),
      ),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(30);
    const shadows = await Promise.all(results.map(async (r) => (await shadowOfRow(r)).shadow));
    expect(shadows.filter((x) => x?.decision === 'allowed')).toHaveLength(10);
    expect(shadows.filter((x) => x?.code === 'budget_exceeded')).toHaveLength(20);
  });

  it('caps equal to the enforced ones are not measured apart: a call both refuse budget_exceeded is no disagreement', async () => {
    const limits = { per_key_daily_usd: (2 * SMS_MICROS) / 1e6 };
    const name = await shadowed(
      { limits, tools: { send_sms: SMS } },
      { limits, tools: { send_sms: { ...SMS, max_segments: 2 } } },
    );
    const key = await keyFor(tdb.db, { policy: name, agent: `bot-${name}` });
    const results: ToolCallResult[] = [];
    for (let i = 0; i < 3; i++)
      results.push(await settledRun(i % 2 ? b : a, key.key, 'send_sms', sms(number('+1555700'))));
    expect(results.map(code)).toEqual(['ok', 'ok', 'budget_exceeded']);
    expect((await shadowOfRow(results[2]!)).shadow).toMatchObject({ decision: 'allowed', caps_same: true });
    const report = JSON.parse((await leash('policies', 'shadow', 'report', name, '--json')).stdout) as {
      compared: number;
      agreed: number;
      disagreements: Record<string, number>;
    };
    expect(report).toMatchObject({
      compared: 3,
      agreed: 3,
      disagreements: { now_denied: 0, now_allowed: 0, now_held: 0, now_tripped: 0 },
    });
  });

  it("a shadow's wire is measured on live calls and never pauses anything: the 4th call in a minute would trip calls_per_minute 3", async () => {
    const name = await shadowed(
      { tools: { send_sms: SMS } },
      { tools: { send_sms: SMS }, tripwires: [{ when: { calls_per_minute: 3 }, then: 'pause' }] },
    );
    const key = await keyFor(tdb.db, { policy: name, agent: `bot-${name}` });
    const results: ToolCallResult[] = [];
    for (let i = 0; i < 5; i++)
      results.push(await settledRun(i % 2 ? b : a, key.key, 'send_sms', sms(number('+1555400'))));
    expect(results.map(code)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    const shadows = await Promise.all(results.map(async (r) => (await shadowOfRow(r)).shadow));
    expect(shadows.map((s) => s?.code ?? null)).toEqual([
      null,
      null,
      null,
      'tripwire_tripped',
      'tripwire_tripped',
    ]);
    expect(shadows[3]).toMatchObject({ decision: 'denied', wire: 'calls_per_minute' });
    const pauses = await tdb.db
      .selectFrom('pauses')
      .select('id')
      .where('scope', 'in', [key.id, name])
      .execute();
    expect(pauses).toEqual([]);
    expect(events.filter((e) => e.type === 'tripwire' && e.key_id === key.id)).toEqual([]);
    const report = JSON.parse((await leash('policies', 'shadow', 'report', name, '--json')).stdout) as {
      disagreements: Record<string, number>;
    };
    expect(report.disagreements).toMatchObject({ now_tripped: 2, now_denied: 0 });
  });

  it('a shadow that loosens: a tool the enforced version refuses would now be allowed; drop removes the shadow', async () => {
    const name = await shadowed({ tools: { get_budget: {} } }, { tools: { get_budget: {}, send_sms: SMS } });
    const key = await keyFor(tdb.db, { policy: name, agent: `bot-${name}` });
    const r = await settledRun(a, key.key, 'send_sms', sms(number('+1555500')));
    expect(code(r)).toBe('tool_not_allowed');
    expect((await shadowOfRow(r)).shadow).toEqual({ version: 2, decision: 'allowed', code: null });
    // The enforced version refused the tool before admission: the shadow's caps and wires were not compared.
    const report = JSON.parse((await leash('policies', 'shadow', 'report', name, '--json')).stdout) as {
      disagreements: Record<string, number>;
      changes: { id: string }[];
    };
    expect(report.disagreements).toMatchObject({ now_allowed: 1 });
    expect(report.changes.map((c) => c.id)).toEqual([auditId(r)]);

    const dropped = await leash('policies', 'shadow', 'drop', name, '--json');
    expect(dropped.code).toBe(0);
    expect(JSON.parse(dropped.stdout)).toEqual({ name, from: 1, to: 1, shadow: 2 });
    await a.shadows!.refresh();
    const next = await settledRun(a, key.key, 'send_sms', sms(number('+1555500')));
    expect(code(next)).toBe('tool_not_allowed');
    expect((await shadowOfRow(next)).shadow).toBeUndefined();
    expect(await leash('policies', 'shadow', 'drop', name)).toMatchObject({ code: 3 });
  });
});

describe('applying and promoting shadows', () => {
  it('refuses a shadow of a policy that does not exist or equal to the enforced version; an equal shadow is a no-op; versions stay dense', async () => {
    const name = `shadow-${++serial}`;
    await expect(
      applyPolicy(tdb.db, doc(name, { tools: { send_sms: SMS } }), SYSTEM_ACTOR, { shadow: true }),
    ).rejects.toThrow(PolicyStateError);
    await applyPolicy(tdb.db, doc(name, { tools: { send_sms: SMS } }));
    await expect(
      applyPolicy(tdb.db, doc(name, { tools: { send_sms: SMS } }), SYSTEM_ACTOR, { shadow: true }),
    ).rejects.toThrow(/the one enforced/);
    const shadowDoc = doc(name, { tools: { send_sms: { ...SMS, max_segments: 1 } } });
    expect(await applyPolicy(tdb.db, shadowDoc, SYSTEM_ACTOR, { shadow: true })).toMatchObject({
      version: 2,
      created: true,
    });
    expect(await applyPolicy(tdb.db, shadowDoc, SYSTEM_ACTOR, { shadow: true })).toMatchObject({
      version: 2,
      created: false,
    });
    // An enforced apply meanwhile takes the next version; the shadow stays.
    expect(await applyPolicy(tdb.db, doc(name, { tools: { send_sms: SMS, get_budget: {} } }))).toMatchObject({
      version: 3,
      shadow: false,
    });
    const row = await tdb.db
      .selectFrom('policies')
      .select(['latest_version', 'shadow_version'])
      .where('name', '=', name)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ latest_version: 3, shadow_version: 2 });
    expect(await changeShadow(tdb.db, name, 'promote')).toEqual({ name, from: 3, to: 2, shadow: 2 });
    expect(await changeShadow(tdb.db, name, 'promote')).toBeUndefined();
    const list = JSON.parse((await leash('policies', 'list', '--json')).stdout) as {
      name: string;
      latest_version: number;
      shadow_version: number | null;
    }[];
    expect(list.find((p) => p.name === name)).toMatchObject({ latest_version: 2, shadow_version: null });
  });

  it('the CLI: apply --shadow prints what it did; on a missing policy it exits 3 and says why', async () => {
    const name = `shadow-${++serial}`;
    const file = join(home, `${name}.yaml`);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(file, `name: ${name}\ntools:\n  get_budget: {}\n`);
    const missing = await leash('policies', 'apply', file, '--shadow');
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('apply it without --shadow first');
    expect((await leash('policies', 'apply', file)).code).toBe(0);
    await writeFile(
      file,
      `name: ${name}\ntools:\n  get_budget: {}\n  send_sms: { from: '+15550001111', to_prefixes: ['+1'] }\n`,
    );
    const shadow = await leash('policies', 'apply', file, '--shadow', '--by', 'bob');
    expect(shadow.code).toBe(0);
    expect(shadow.stdout).toContain(`policy '${name}' version 2 is now its shadow`);
    const action = await tdb.db
      .selectFrom('operator_actions')
      .select(['actor', 'action'])
      .where('target', '=', `policy:${name}`)
      .where('action', '=', 'policy.shadow')
      .executeTakeFirstOrThrow();
    expect(action).toEqual({ actor: 'bob', action: 'policy.shadow' });
    const help = await leash('policies', 'shadow', '--help');
    expect(help.code).toBe(0);
    for (const line of help.stdout.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
  });
});

describe('policies replay backtests a candidate’s tripwires over past audit rows', () => {
  it('calls_per_minute 5 over 8 live calls of one key: trips on the 6th (named by audit id), would have stopped 3; exit 1', async () => {
    const name = `replay-${++serial}`;
    await applyPolicy(tdb.db, doc(name, { tools: { send_sms: SMS } }));
    const key = await keyFor(tdb.db, { policy: name, agent: `bot-${name}` });
    const other = await keyFor(tdb.db, { policy: name, agent: `bot-${name}` });
    const results: ToolCallResult[] = [];
    for (let i = 0; i < 8; i++)
      results.push(await settledRun(i % 2 ? b : a, key.key, 'send_sms', sms(number('+1555900'))));
    // Another key of the policy, under its own line.
    await settledRun(a, other.key, 'send_sms', sms(number('+1555900')));
    expect(results.map(code)).toEqual(Array(8).fill('ok'));

    const { writeFile } = await import('node:fs/promises');
    const file = join(home, `${name}.yaml`);
    await writeFile(
      file,
      `name: ${name}\ntools:\n  send_sms: { from: '+15550001111', to_prefixes: ['+1'], max_segments: 3 }\n` +
        `tripwires:\n  - { when: { calls_per_minute: 5 }, then: pause }\n`,
    );
    const replay = await leash('policies', 'replay', file, '--since', '1h', '--json');
    expect(replay.code).toBe(1);
    const r = JSON.parse(replay.stdout) as {
      now_denied: number;
      tripwires: {
        trips: { wire: string; scope_kind: string; scope: string; audit_id: string; figure: number }[];
        stopped_calls: number;
        stopped_usd_micros: number;
      };
    };
    expect(r.now_denied).toBe(0);
    expect(r.tripwires.trips).toEqual([
      expect.objectContaining({
        wire: 'calls_per_minute',
        scope_kind: 'key',
        scope: key.id,
        audit_id: auditId(results[5]!),
        figure: 6,
      }),
    ]);
    expect(r.tripwires.stopped_calls).toBe(3);
    expect(r.tripwires.stopped_usd_micros).toBe(3 * SMS_MICROS);
    const text = await cli(['policies', 'replay', file, '--since', '1h'], { ...env, COLUMNS: '80' });
    expect(text.stdout).toContain('would have stopped 3 calls');
    for (const line of text.stdout.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
  });
});
