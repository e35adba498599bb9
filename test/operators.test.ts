// Covers named operators end to end: `leash operators add|list|remove` (a token shown once, only its hash stored),
// the admin API and the console signed in with an operator token, every approve, deny, revoke, rotate, policy apply
// and vendor credential change recording who made it (operator name, `admin` for the admin token, the CLI's name),
// shown in `audit query|tail --operator-actions` and alerts, removal refusing the token and ending console
// sessions on every replica, and `leash serve` without LEASH_ADMIN_TOKEN printing the console's URL and serving
// /metrics to operator tokens once an operator exists.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlerts, type Alerts } from '../src/admin/alerts.js';
import { adminRoutes } from '../src/admin/routes.js';
import { watchActions, type OperatorAction } from '../src/audit/operator-actions.js';
import { createLogger } from '../src/config/logger.js';
import type { Db, DbHandle } from '../src/db/database.js';
import { createPipeline, runTool, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { createAuthThrottle, type AuthThrottle } from '../src/server/auth-throttle.js';
import { consoleRoutes } from '../src/server/console/routes.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { sendJson, startRecordingServer, type RecordingServer } from '../src/vendor-kit/fake-server.js';
import { catalog } from '../tools/index.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, keyFor, testConfig } from './support/governance.js';
import { childEnv, LEASH_BIN } from './support/cli.js';
import { cli } from './support/run-cli.js';
import { startVendors, type Vendors } from './support/vendors.js';

const ADMIN_TOKEN = 'operators-admin-token-0123456789abcdef';
/** How long a test waits for an event on a busy machine: a safety net, not a guess of the time it takes. */
const WAIT_MS = 20_000;
const TOKEN_RE = /^lso_[a-z2-7]{52}$/;
const ME = `cli:${userInfo().username}`;

let tdb: TestDatabase;
let vendors: Vendors;
let deps: PipelineDeps;
let hook: RecordingServer;
let alerts: Alerts;
let throttle: AuthThrottle;
let home: string;
let env: Record<string, string>;
/**
 * Replicas 0 and 1: each its own pool, console sessions and HTTP server, one database. Replica 2 checks its
 * sessions' operators only on their requests (its periodic check is an hour apart).
 */
let replicas: { http: RunningHttp; web: ReturnType<typeof consoleRoutes>; pool?: DbHandle }[] = [];
const logLines: string[] = [];
/** Every token printed, for the canary checks. */
const tokens: string[] = [];

const leash = (argv: string[], extra: Record<string, string> = {}, stdin?: string) =>
  cli(argv, { ...env, ...extra }, stdin);

async function startReplica(db: Db, operatorCheckMs = 50) {
  const config = testConfig({
    ...vendors.env,
    LEASH_ADMIN_TOKEN: ADMIN_TOKEN,
    LEASH_ALERT_WEBHOOK_URL: `${hook.url}/hook`,
  });
  const d = { ...deps, db };
  const web = consoleRoutes({ db, config, alerts, throttle, operatorCheckMs });
  const http = await startHttpServer(d, {
    host: '127.0.0.1',
    port: 0,
    routes: [adminRoutes(d, config, alerts, throttle), web],
    throttle,
  });
  return { http, web };
}

beforeAll(async () => {
  tdb = await freshDatabase(8);
  vendors = await startVendors();
  hook = await startRecordingServer((_req, res) => sendJson(res, 200, { ok: true }));
  home = await mkdtemp(join(tmpdir(), 'leash-operators-'));
  env = { DATABASE_URL: tdb.url, LEASH_HOME: home, LEASH_LOG: 'silent' };
  const config = testConfig({
    ...vendors.env,
    LEASH_ADMIN_TOKEN: ADMIN_TOKEN,
    LEASH_ALERT_WEBHOOK_URL: `${hook.url}/hook`,
  });
  const log = createLogger({ logLevel: 'debug' }, (l) => logLines.push(l));
  alerts = startAlerts({ config, log, fetchTimeoutMs: 10_000 });
  throttle = createAuthThrottle({ maxFailures: 1000, windowMs: 60_000 });
  deps = createPipeline({ db: tdb.db, config, catalog, sandbox: false, log });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'ops',
    tools: {
      send_email: { from: 'Support <support@acme.com>', to_domains: ['acme.com'] },
      get_budget: {},
    },
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'gated',
    tools: {
      send_email: {
        from: 'Support <support@acme.com>',
        to_domains: ['acme.com'],
        approval: { always: true, expires: '30m' },
      },
    },
  });
  const second = await tdb.openPool(4);
  replicas = [
    await startReplica(tdb.db),
    { ...(await startReplica(second.db)), pool: second },
    await startReplica(tdb.db, 3_600_000),
  ];
});

afterAll(async () => {
  for (const r of replicas) {
    r.web.close();
    await r.http.close();
    await r.pool?.close();
  }
  await alerts?.close();
  await hook?.close();
  await vendors?.close();
  await tdb?.close();
  await rm(home, { recursive: true, force: true });
});

const url = (i = 0) => replicas[i]?.http.url ?? '';

function admin(path: string, token: string, init: RequestInit = {}, replica = 0, base = url(replica)) {
  return fetch(`${base}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
  });
}

async function addOperator(name: string, extra: Record<string, string> = {}): Promise<string> {
  const r = await leash(['operators', 'add', name], extra);
  expect(r.code, r.stderr).toBe(0);
  const token = r.stdout.trim();
  expect(token).toMatch(TOKEN_RE);
  tokens.push(token);
  return token;
}

/** A call held for a person (its approval request's id), by a key of its own. */
async function heldCall(agent: string): Promise<string> {
  const key = await keyFor(tdb.db, { policy: 'gated', agent, runId: `run-${agent}` });
  const r = await runTool(deps, key.key, 'send_email', {
    to: ['pat@acme.com'],
    subject: `from ${agent}`,
    text: 'Your refund is on its way.',
  });
  expect(r.ok).toBe(false);
  if (r.ok) return '';
  expect(r.failure.code).toBe('approval_required');
  return String((r.failure.details as { approval_id: string }).approval_id);
}

const actionsOf = async (actor: string) =>
  (
    await tdb.pool.query<{ action: string; target: string; via: string; detail: Record<string, unknown> }>(
      'select action, target, via, detail from operator_actions where actor = $1 order by id',
      [actor],
    )
  ).rows;

const decidedBy = async (id: string) =>
  (await tdb.pool.query<{ decided_by: string }>('select decided_by from approvals where id = $1', [id]))
    .rows[0]?.decided_by;

/** The alerts the webhook received, as their events. */
const alertEvents = () =>
  hook.received.map((r) => (JSON.parse(r.body) as { event: Record<string, unknown>; text: string }).event);

/** Signs in to a replica's console; returns the cookie and the page's CSRF token. */
async function consoleSignIn(token: string, replica = 0): Promise<{ cookie: string; csrf: string }> {
  const origin = url(replica);
  const login = await fetch(`${origin}/console/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }),
  });
  expect(login.status).toBe(303);
  const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const page = await (await fetch(`${origin}/console`, { headers: { cookie } })).text();
  const csrf = /<meta name="leash-csrf" content="([^"]+)">/.exec(page)?.[1] ?? '';
  expect(csrf).not.toBe('');
  return { cookie, csrf };
}

function consolePost(s: { cookie: string; csrf: string }, path: string, body: unknown, replica = 0) {
  const origin = url(replica);
  return fetch(`${origin}${path}`, {
    method: 'POST',
    headers: { origin, cookie: s.cookie, 'x-leash-csrf': s.csrf, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

describe('leash operators', () => {
  it('adds an operator: the token is printed once, on stdout only, and only its sha-256 is stored', async () => {
    const r = await leash(['operators', 'add', 'alice', '--by', 'root-admin']);
    expect(r.code, r.stderr).toBe(0);
    const token = r.stdout.trim();
    expect(token).toMatch(TOKEN_RE);
    tokens.push(token);
    expect(r.stderr).toContain('only time the token is shown');
    expect(r.stderr).not.toContain(token);
    const { rows } = await tdb.pool.query<{ token_hash: Buffer; created_by: string }>(
      `select token_hash, created_by from operators where name = 'alice' and removed_at is null`,
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]?.token_hash.equals(createHash('sha256').update(token).digest())).toBe(true);
    expect(rows[0]?.created_by).toBe('root-admin');
    // root-admin also removes other operators in this file: only what it did to alice is this test's.
    expect((await actionsOf('root-admin')).filter((x) => x.target === 'operator:alice')).toEqual([
      expect.objectContaining({ action: 'operator.add', target: 'operator:alice', via: 'cli' }),
    ]);

    const list = await leash(['operators', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain('alice');
    expect(list.stdout).toContain('root-admin');
    const json = await leash(['operators', 'list', '--json']);
    // Other tests add operators of their own: alice is listed once, as added.
    expect((JSON.parse(json.stdout) as { name: string }[]).filter((o) => o.name === 'alice')).toEqual([
      expect.objectContaining({ name: 'alice', status: 'active', created_by: 'root-admin' }),
    ]);
    for (const out of [list.stdout, list.stderr, json.stdout]) expect(out).not.toContain(token.slice(4));
  });

  it('refuses a taken, reserved or malformed name, naming the problem, and stores nothing', async () => {
    await addOperator('abe');
    const taken = await leash(['operators', 'add', 'abe']);
    expect([taken.code, taken.stderr]).toEqual([1, expect.stringContaining("'abe' already exists")]);
    expect(taken.stdout).toBe('');
    const reserved = await leash(['operators', 'add', 'admin']);
    expect([reserved.code, reserved.stderr]).toEqual([2, expect.stringContaining("'admin' is reserved")]);
    const bads = ['Alice', 'a b', 'x'.repeat(65), '.dot', 'eve;drop'];
    for (const bad of bads) {
      const r = await leash(['operators', 'add', bad]);
      expect([r.code, r.stderr]).toEqual([2, expect.stringContaining('NAME: an operator name is 1-64')]);
    }
    const unknown = await leash(['operators', 'remove', 'nobody']);
    expect([unknown.code, unknown.stderr]).toEqual([3, expect.stringContaining("no operator 'nobody'")]);
    // Other tests add operators of their own: of the names tried here, only abe's first add is stored.
    const { rows } = await tdb.pool.query<{ name: string }>(
      'select name from operators where name = any($1::text[])',
      [['abe', 'admin', 'nobody', ...bads]],
    );
    expect(rows.map((r) => r.name)).toEqual(['abe']);
  });
});

describe('the admin API with an operator token', () => {
  let token: string;
  beforeAll(async () => {
    token = await addOperator('bea');
  });

  it('knows who is calling, and refuses a token that is no operator’s with 401', async () => {
    expect(await (await admin('/admin/whoami', token)).json()).toEqual({
      operator: 'bea',
      admin_token: false,
    });
    expect(await (await admin('/admin/whoami', ADMIN_TOKEN)).json()).toEqual({
      operator: 'admin',
      admin_token: true,
    });
    const failures = throttle.counts.failures;
    const forged = `lso_${'a'.repeat(52)}`;
    for (const wrong of [forged, token.slice(0, -1), `${token}x`]) {
      const r = await admin('/admin/keys', wrong);
      expect(r.status).toBe(401);
      expect(JSON.stringify(await r.json())).not.toContain(wrong);
    }
    // Wrong operator tokens count toward the address's allowance, as wrong admin tokens do.
    expect(throttle.counts.failures).toBe(failures + 3);
  });

  it('records the operator on a revoke (key row, operator action, alert)', async () => {
    const k = await keyFor(tdb.db, { policy: 'ops', agent: 'api-revoke', runId: 'r-api' });
    const r = await admin(`/admin/keys/${k.id}/revoke`, token, {
      method: 'POST',
      body: JSON.stringify({ reason: 'incident 7' }),
    });
    expect(await r.json()).toEqual({ revoked: [k.id] });
    const { rows } = await tdb.pool.query<{ revoked_by: string }>(
      'select revoked_by from vault_keys where id = $1',
      [k.id],
    );
    expect(rows[0]?.revoked_by).toBe('bea');
    expect(await actionsOf('bea')).toContainEqual({
      action: 'key.revoke',
      target: `key:${k.id}`,
      via: 'admin_api',
      detail: { key_ids: [k.id], reason: 'incident 7' },
    });
    await alerts.drain(WAIT_MS);
    expect(alertEvents()).toContainEqual(
      expect.objectContaining({ type: 'key_revoked', key_ids: [k.id], by: 'bea', via: 'admin_api' }),
    );
    const keys = (await (await admin('/admin/keys?agent=api-revoke', token)).json()) as {
      keys: { revoked_by: string }[];
    };
    expect(keys.keys[0]?.revoked_by).toBe('bea');
  });

  it('records the operator on approve and deny; a `by` in the body only follows the name', async () => {
    const a = await heldCall('api-approve');
    const d = await heldCall('api-deny');
    const ok = await admin(`/admin/approvals/${a}/approve`, token, {
      method: 'POST',
      body: '{"note":"fine"}',
    });
    expect(ok.status).toBe(200);
    const no = await admin(`/admin/approvals/${d}/deny`, token, {
      method: 'POST',
      body: JSON.stringify({ by: 'alice' }),
    });
    expect(no.status).toBe(200);
    expect(await decidedBy(a)).toBe('bea');
    expect(await decidedBy(d)).toBe('bea (alice)');
    // The held call's audit row says who decided, as `audit query` shows it.
    const audit = (await (await admin('/admin/audit?agent=api-approve&decision=held', token)).json()) as {
      rows: { approval: { decided_by: string } | null }[];
    };
    expect(audit.rows[0]?.approval?.decided_by).toBe('bea');
    const q = await leash(['audit', 'query', '--agent', 'api-approve', '--decision', 'held', '--json']);
    const rows = JSON.parse(q.stdout) as { approval: { decided_by: string } | null }[];
    expect(rows.map((r) => r.approval?.decided_by)).toEqual(['bea']);
    expect(await actionsOf('bea (alice)')).toEqual([
      expect.objectContaining({ action: 'approval.deny', target: `approval:${d}`, via: 'admin_api' }),
    ]);
    await alerts.drain(WAIT_MS);
    expect(alertEvents()).toContainEqual(
      expect.objectContaining({ type: 'operator_action', action: 'approval.approve', by: 'bea' }),
    );
  });

  it('records `admin` for the break-glass admin token', async () => {
    const k = await keyFor(tdb.db, { policy: 'ops', agent: 'glass', runId: 'r-glass' });
    expect(
      await (
        await admin('/admin/revoke', ADMIN_TOKEN, {
          method: 'POST',
          body: JSON.stringify({ agent: 'glass' }),
        })
      ).json(),
    ).toEqual({ revoked: [k.id] });
    const a = await heldCall('glass-approve');
    const b = await heldCall('glass-bot');
    await admin(`/admin/approvals/${a}/approve`, ADMIN_TOKEN, { method: 'POST', body: '{}' });
    await admin(`/admin/approvals/${b}/approve`, ADMIN_TOKEN, { method: 'POST', body: '{"by":"ops-bot"}' });
    expect([await decidedBy(a), await decidedBy(b)]).toEqual(['admin', 'admin (ops-bot)']);
    const { rows } = await tdb.pool.query<{ revoked_by: string }>(
      'select revoked_by from vault_keys where id = $1',
      [k.id],
    );
    expect(rows[0]?.revoked_by).toBe('admin');
    // Other tests act with the admin token too: only this test's targets are looked at.
    const mine = new Set(['agent:glass', `approval:${a}`, `approval:${b}`]);
    expect(
      (await actionsOf('admin')).filter((x) => mine.has(x.target)).map((x) => `${x.action} ${x.target}`),
    ).toEqual(['key.revoke agent:glass', `approval.approve approval:${a}`]);
  });
});

describe('the console with an operator token', () => {
  let token: string;
  beforeAll(async () => {
    token = await addOperator('cleo');
  });

  it('signs in, says who is signed in, and records the name on approve, deny and revoke', async () => {
    const s = await consoleSignIn(token);
    const who = await fetch(`${url()}/console/api/session`, { headers: { cookie: s.cookie } });
    expect(await who.json()).toEqual({ ok: true, operator: 'cleo', admin_token: false });

    const a = await heldCall('console-approve');
    const d = await heldCall('console-deny');
    expect((await consolePost(s, `/console/api/approvals/${a}/approve`, { note: 'ok' })).status).toBe(200);
    expect((await consolePost(s, `/console/api/approvals/${d}/deny`, {})).status).toBe(200);
    const k = await keyFor(tdb.db, { policy: 'ops', agent: 'console-revoke', runId: 'r-console' });
    const r = await consolePost(s, '/console/api/revoke', { run_id: 'r-console' });
    expect(await r.json()).toEqual({ revoked: [k.id] });

    expect([await decidedBy(a), await decidedBy(d)]).toEqual(['cleo', 'cleo']);
    const { rows } = await tdb.pool.query<{ revoked_by: string }>(
      'select revoked_by from vault_keys where id = $1',
      [k.id],
    );
    expect(rows[0]?.revoked_by).toBe('cleo');
    expect((await actionsOf('cleo')).map((x) => `${x.action} ${x.target} ${x.via}`)).toEqual([
      `approval.approve approval:${a} console`,
      `approval.deny approval:${d} console`,
      'key.revoke run:r-console console',
    ]);
    await alerts.drain(WAIT_MS);
    expect(alertEvents()).toContainEqual(
      expect.objectContaining({ type: 'key_revoked', key_ids: [k.id], by: 'cleo', via: 'console' }),
    );
  });

  it('records `admin` for a session signed in with the admin token', async () => {
    const s = await consoleSignIn(ADMIN_TOKEN);
    expect(
      await (await fetch(`${url()}/console/api/session`, { headers: { cookie: s.cookie } })).json(),
    ).toEqual({ ok: true, operator: 'admin', admin_token: true });
    const a = await heldCall('console-admin');
    expect((await consolePost(s, `/console/api/approvals/${a}/approve`, {})).status).toBe(200);
    expect(await decidedBy(a)).toBe('admin');
  });

  it('refuses a token that is no operator’s', async () => {
    const origin = url();
    const r = await fetch(`${origin}/console/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: `lso_${'b'.repeat(52)}` }),
    });
    expect(r.status).toBe(401);
    expect(r.headers.get('set-cookie')).toBeNull();
  });
});

describe('the CLI records who acted', () => {
  it('records --by, LEASH_OPERATOR, or cli:<os user> on rotate, revoke, policy apply, credentials and approvals', async () => {
    const k = await keyFor(tdb.db, { policy: 'ops', agent: 'cli-keys', runId: 'r-cli' });
    const rotated = await leash(['keys', 'rotate', k.id, '--by', 'dave']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const revoked = await leash(['keys', 'revoke', k.id, '--json'], { LEASH_OPERATOR: 'erin' });
    expect(revoked.code, revoked.stderr).toBe(0);
    const shown = JSON.parse((await leash(['keys', 'show', k.id, '--json'])).stdout) as Record<
      string,
      unknown
    >;
    expect(shown).toMatchObject({ rotated_by: 'dave', revoked_by: 'erin', status: 'revoked' });

    const file = join(home, 'cli-policy.yaml');
    await writeFile(file, 'name: cli-applied\ntools:\n  get_budget: {}\n');
    const applied = await leash(['policies', 'apply', file], { LEASH_OPERATOR: 'erin' });
    expect(applied.code, applied.stderr).toBe(0);
    const policies = JSON.parse((await leash(['policies', 'list', '--json'])).stdout) as {
      name: string;
      applied_by: string;
    }[];
    expect(policies.find((p) => p.name === 'cli-applied')?.applied_by).toBe('erin');

    const set = await leash(
      ['vendors', 'set', 'resend', '--name', 'backup', '--from-env', 'RESEND_API_KEY'],
      {
        RESEND_API_KEY: 're_operatorsTest_a1b2c3',
        LEASH_OPERATOR: 'erin',
      },
    );
    expect(set.code, set.stderr).toBe(0);
    const listed = JSON.parse((await leash(['vendors', 'list', '--json'])).stdout) as {
      vendor: string;
      name: string;
      updated_by: string | null;
    }[];
    expect(listed.find((c) => c.vendor === 'resend' && c.name === 'backup')?.updated_by).toBe('erin');
    const removed = await leash(['vendors', 'remove', 'resend', '--name', 'backup', '--by', 'dave']);
    expect(removed.code, removed.stderr).toBe(0);

    const a = await heldCall('cli-approve');
    const approved = await leash(['approvals', 'approve', a]);
    expect(approved.code, approved.stderr).toBe(0);
    expect(await decidedBy(a)).toBe(ME);

    expect((await actionsOf('dave')).map((x) => `${x.action} ${x.target} ${x.via}`)).toEqual([
      `key.rotate key:${k.id} cli`,
      'credential.remove credential:resend/backup cli',
    ]);
    expect((await actionsOf('erin')).map((x) => `${x.action} ${x.target}`)).toEqual([
      `key.revoke key:${k.id}`,
      'policy.apply policy:cli-applied',
      'credential.set credential:resend/backup',
    ]);
    // What a credential change records: where the secret comes from, never the secret.
    const setAction = (await actionsOf('erin'))[2];
    expect(setAction?.detail).toMatchObject({ source: 'env', env_vars: ['RESEND_API_KEY'] });
    expect(JSON.stringify(await actionsOf('erin'))).not.toContain('re_operatorsTest');
    expect(await actionsOf(ME)).toContainEqual(
      expect.objectContaining({ action: 'approval.approve', via: 'cli' }),
    );
  });

  it('refuses a --by or LEASH_OPERATOR that is empty, too long or has control characters, and changes nothing', async () => {
    const k = await keyFor(tdb.db, { policy: 'ops', agent: 'cli-bad-by', runId: 'r-bad' });
    for (const [args, extra, flag] of [
      [['--by', ' '], {}, '--by'],
      [['--by', 'x'.repeat(201)], {}, '--by'],
      [['--by', 'eve\u001b[2J'], {}, '--by'],
      [[], { LEASH_OPERATOR: 'eve\nmallory' }, 'LEASH_OPERATOR'],
    ] as const) {
      const r = await leash(['keys', 'revoke', k.id, ...args], extra);
      expect([r.code, r.stderr]).toEqual([2, expect.stringContaining(`${flag}: expected a name`)]);
    }
    const { rows } = await tdb.pool.query<{ revoked_at: Date | null }>(
      'select revoked_at from vault_keys where id = $1',
      [k.id],
    );
    expect(rows[0]?.revoked_at).toBeNull();
  });
});

describe('audit query and tail --operator-actions', () => {
  /**
   * What these tests read, made here under names no other test uses: ada through the admin API, rhea in the console,
   * the admin token, and una and the OS user through the CLI (more than 10 actions, at every door).
   */
  const made = {
    adaKey: '',
    rheaApproved: '',
    adminApproved: '',
    cliApproved: '',
    revokeTargets: [] as string[],
  };
  beforeAll(async () => {
    const ada = await addOperator('ada');
    const rhea = await addOperator('rhea');

    const adaApprove = await heldCall('audit-ada-approve');
    const adaDeny = await heldCall('audit-ada-deny');
    const post = { method: 'POST', body: '{}' };
    expect((await admin(`/admin/approvals/${adaApprove}/approve`, ada, post)).status).toBe(200);
    expect((await admin(`/admin/approvals/${adaDeny}/deny`, ada, post)).status).toBe(200);
    const adaKey = await keyFor(tdb.db, { policy: 'ops', agent: 'audit-ada', runId: 'r-audit-ada' });
    const byAda = await admin(`/admin/keys/${adaKey.id}/revoke`, ada, {
      method: 'POST',
      body: JSON.stringify({ reason: 'incident 7' }),
    });
    expect(await byAda.json()).toEqual({ revoked: [adaKey.id] });

    const s = await consoleSignIn(rhea);
    const a = await heldCall('audit-rhea-approve');
    const d = await heldCall('audit-rhea-deny');
    expect((await consolePost(s, `/console/api/approvals/${a}/approve`, {})).status).toBe(200);
    expect((await consolePost(s, `/console/api/approvals/${d}/deny`, {})).status).toBe(200);
    const rheaKey = await keyFor(tdb.db, { policy: 'ops', agent: 'audit-rhea', runId: 'r-audit' });
    const byRhea = await consolePost(s, '/console/api/revoke', { run_id: 'r-audit' });
    expect(await byRhea.json()).toEqual({ revoked: [rheaKey.id] });

    const g = await heldCall('audit-admin');
    expect((await admin(`/admin/approvals/${g}/approve`, ADMIN_TOKEN, post)).status).toBe(200);
    const glassKey = await keyFor(tdb.db, { policy: 'ops', agent: 'audit-glass', runId: 'r-audit-glass' });
    const byAdmin = await admin('/admin/revoke', ADMIN_TOKEN, {
      method: 'POST',
      body: JSON.stringify({ agent: 'audit-glass' }),
    });
    expect(await byAdmin.json()).toEqual({ revoked: [glassKey.id] });

    const c = await heldCall('audit-cli');
    const approved = await leash(['approvals', 'approve', c]);
    expect(approved.code, approved.stderr).toBe(0);
    const unaKey = await keyFor(tdb.db, { policy: 'ops', agent: 'audit-una', runId: 'r-audit-una' });
    for (const verb of ['rotate', 'revoke']) {
      const r = await leash(['keys', verb, unaKey.id], { LEASH_OPERATOR: 'una' });
      expect(r.code, r.stderr).toBe(0);
    }

    Object.assign(made, {
      adaKey: adaKey.id,
      rheaApproved: a,
      adminApproved: g,
      cliApproved: c,
      revokeTargets: [`key:${adaKey.id}`, 'run:r-audit', 'agent:audit-glass', `key:${unaKey.id}`],
    });
  });

  it('lists who did what, newest first, filtered by operator and action', async () => {
    const r = await leash(['audit', 'query', '--operator-actions', '--operator', 'rhea', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as OperatorAction[];
    expect(rows.map((x) => x.action)).toEqual(['key.revoke', 'approval.deny', 'approval.approve']);
    expect(rows.every((x) => x.actor === 'rhea' && x.via === 'console')).toBe(true);
    const revokes = await leash(['audit', 'query', '--operator-actions', '--action', 'key.revoke', '--json']);
    const revoked = JSON.parse(revokes.stdout) as OperatorAction[];
    expect(revoked.every((x) => x.action === 'key.revoke')).toBe(true);
    // Other tests revoke too: of this describe's actions (approvals, rotations and all), only the revokes are listed.
    expect(
      revoked
        .filter((x) => made.revokeTargets.includes(x.target))
        .map((x) => x.actor)
        .sort(),
    ).toEqual(['admin', 'ada', 'rhea', 'una'].sort());
    const table = await leash(['audit', 'query', '--operator-actions', '--operator', 'ada', '--wide']);
    expect(table.stdout).toMatch(/ada\s+admin_api\s+key\.revoke\s+key:[a-z2-7]{12}\s+.*incident 7/);
  });

  it('refuses call filters and bad values with --operator-actions, naming the flag', async () => {
    const both = await leash(['audit', 'query', '--operator-actions', '--agent', 'x']);
    expect([both.code, both.stderr]).toEqual([2, expect.stringContaining('--agent')]);
    const action = await leash(['audit', 'query', '--operator-actions', '--action', 'key.delete']);
    expect([action.code, action.stderr]).toEqual([2, expect.stringContaining('--action must be one of')]);
    const alone = await leash(['audit', 'query', '--operator', 'bea']);
    expect([alone.code, alone.stderr]).toEqual([
      2,
      expect.stringContaining('--operator needs --operator-actions'),
    ]);
  });

  it('tails operator actions as lines that say who did what', async () => {
    const r = await leash(['audit', 'tail', '--operator-actions', '-n', '50']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ rhea revoked run:r-audit \(console\)/);
    expect(r.stdout).toContain(` admin approved ${made.adminApproved} (admin_api)`);
    expect(r.stdout).toContain(` ${ME} approved ${made.cliApproved} (cli)`);
  });

  it('fits 80 columns with times, names and targets whole', async () => {
    const tail = await leash(['audit', 'tail', '--operator-actions', '-n', '50'], { COLUMNS: '80' });
    const query = await leash(['audit', 'query', '--operator-actions'], { COLUMNS: '80' });
    for (const out of [tail.stdout, query.stdout]) {
      expect(out).toMatch(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/);
      expect(out).toMatch(/key:[a-z2-7]{12}\b/);
      expect(out).toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/);
      expect(out).not.toContain('…01'); // no id is cut
    }
    // A tail line is longer than 80 only when its time, name and target alone are: nothing else is added then.
    const lines = tail.stdout.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThan(10);
    for (const l of lines) if (l.length > 80) expect(l).toMatch(/ [0-9a-f-]{36}$|:[a-z2-7]{12}$/);
    expect(lines.filter((l) => l.length <= 80).length).toBeGreaterThan(lines.length / 2);
    expect(tail.stdout).toMatch(new RegExp(` ada revoked key:${made.adaKey} \\(admin_api\\): incident 7`));
    // 86 characters with its door: the door is left out.
    expect(tail.stdout).toMatch(new RegExp(` rhea approved ${made.rheaApproved}$`, 'm'));
  });

  it('reports an action committed after the watch started, once', async () => {
    const seen: OperatorAction[] = [];
    const watch = watchActions(tdb.db, { actor: 'fern' }, (a) => seen.push(a), { intervalMs: 25 });
    try {
      await watch.ready;
      const k = await keyFor(tdb.db, { policy: 'ops', agent: 'watched', runId: 'r-watch' });
      expect((await leash(['keys', 'revoke', k.id, '--by', 'fern'])).code).toBe(0);
      await expect.poll(() => seen.length, { timeout: WAIT_MS }).toBe(1);
      expect(seen[0]).toMatchObject({ actor: 'fern', action: 'key.revoke', target: `key:${k.id}` });
    } finally {
      await watch.stop();
    }
  });
});

describe('removing an operator', () => {
  it('refuses their token at once and ends their console sessions on every replica', async () => {
    const token = await addOperator('gus');
    expect((await admin('/admin/whoami', token)).status).toBe(200);
    const sessions = [await consoleSignIn(token, 0), await consoleSignIn(token, 1)];
    // A live stream on each replica: each must end when gus is removed.
    const ended = await Promise.all(
      sessions.map(async (s, i) => {
        const res = await fetch(`${url(i)}/console/api/stream`, { headers: { cookie: s.cookie } });
        expect(res.status).toBe(200);
        const reader = res.body!.getReader();
        await reader.read(); // the stream is open
        // In an object: an async function returning a promise would wait for it.
        return {
          done: (async () => {
            for (;;) if ((await reader.read()).done) return true;
          })(),
        };
      }),
    );
    const removed = await leash(['operators', 'remove', 'gus', '--by', 'root-admin']);
    expect(removed.code, removed.stderr).toBe(0);
    // The very next admin request is refused, on both replicas.
    for (const i of [0, 1]) expect((await admin('/admin/whoami', token, {}, i)).status).toBe(401);
    // The open streams end without another request of theirs: each replica checks its sessions' operators.
    const bound = new Promise<false>((resolve) => setTimeout(() => resolve(false), WAIT_MS).unref());
    expect(await Promise.all(ended.map((e) => Promise.race([e.done, bound])))).toEqual([true, true]);
    for (const i of [0, 1]) {
      const who = await fetch(`${url(i)}/console/api/session`, {
        headers: { cookie: sessions[i]?.cookie ?? '' },
      });
      expect(who.status).toBe(401);
    }
    const origin = url();
    const again = await fetch(`${origin}/console/login`, {
      method: 'POST',
      redirect: 'manual',
      headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    });
    expect(again.status).toBe(401);
    expect(await actionsOf('root-admin')).toContainEqual(
      expect.objectContaining({ action: 'operator.remove', target: 'operator:gus' }),
    );
  });

  it('refuses the next console request of a removed operator, before any periodic check', async () => {
    const token = await addOperator('ivy');
    const s = await consoleSignIn(token, 2);
    const session = () => fetch(`${url(2)}/console/api/session`, { headers: { cookie: s.cookie } });
    expect((await session()).status).toBe(200);
    expect((await leash(['operators', 'remove', 'ivy'])).code).toBe(0);
    expect((await session()).status).toBe(401);
    expect((await consolePost(s, '/console/api/revoke', { agent: 'anyone' }, 2)).status).toBe(401);
  });

  it('lets the name be given again with a new token, while the old one stays refused', async () => {
    const old = await addOperator('hal');
    expect((await leash(['operators', 'remove', 'hal'])).code).toBe(0);
    const fresh = await addOperator('hal');
    expect(fresh).not.toBe(old);
    expect((await admin('/admin/whoami', old)).status).toBe(401);
    expect(await (await admin('/admin/whoami', fresh)).json()).toEqual({
      operator: 'hal',
      admin_token: false,
    });
    const all = JSON.parse((await leash(['operators', 'list', '--all', '--json'])).stdout) as {
      name: string;
      status: string;
    }[];
    expect(all.filter((o) => o.name === 'hal').map((o) => o.status)).toEqual(['active', 'removed']);
  });
});

describe('without LEASH_ADMIN_TOKEN', () => {
  it('keeps /admin and /console off until an operator exists, then serves only operator tokens', async () => {
    const own = await freshDatabase(4);
    const config = testConfig({ ...vendors.env });
    const d = { ...deps, db: own.db };
    const web = consoleRoutes({ db: own.db, config });
    const http = await startHttpServer(d, {
      host: '127.0.0.1',
      port: 0,
      routes: [adminRoutes(d, config), web],
    });
    try {
      const off = await fetch(`${http.url}/admin/whoami`);
      expect([off.status, ((await off.json()) as { error: string }).error]).toEqual([
        404,
        expect.stringContaining('leash operators add'),
      ]);
      expect((await fetch(`${http.url}/console`)).status).toBe(404);
      const r = await cli(['operators', 'add', 'jo'], { ...env, DATABASE_URL: own.url });
      const token = r.stdout.trim();
      tokens.push(token);
      // On within a second (the off state is read at most once a second); a token still decides who passes.
      await expect
        .poll(async () => (await admin(`/admin/whoami`, token, {}, -1, http.url)).status, {
          timeout: WAIT_MS,
        })
        .toBe(200);
      expect((await admin('/admin/whoami', ADMIN_TOKEN, {}, -1, http.url)).status).toBe(401);
      const login = () =>
        fetch(`${http.url}/console/login`, {
          method: 'POST',
          redirect: 'manual',
          headers: { origin: http.url, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token }),
        });
      await expect.poll(async () => (await login()).status, { timeout: WAIT_MS }).toBe(303);
    } finally {
      web.close();
      await http.close();
      await own.close();
    }
  });
});

describe('leash serve without LEASH_ADMIN_TOKEN', () => {
  /** `leash serve --json` on `databaseUrl` (no admin token): what it printed, once it says where the console is. */
  async function serve(databaseUrl: string) {
    const child = spawn(
      process.execPath,
      [LEASH_BIN, 'serve', '--port', '0', '--reconcile-every', '0', '--json'],
      {
        env: childEnv({ DATABASE_URL: databaseUrl, LEASH_HOME: home, LEASH_LOG: 'silent' }),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const stop = async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      expect(await exited, err).toBe(0);
    };
    try {
      await expect
        .poll(() => (child.exitCode === null ? err : 'exited'), { timeout: WAIT_MS })
        .toMatch(/operator console/);
    } catch (error) {
      await stop().catch(() => undefined);
      throw new Error(`leash serve: ${err}`, { cause: error });
    }
    const info = JSON.parse(out) as { url: string; metrics_url: string | null; console_url: string | null };
    return { info, stderr: () => err, stop };
  }

  it('says the console is off until an operator exists, then prints its URL, and /metrics takes operator tokens', async () => {
    const own = await freshDatabase(4);
    try {
      const off = await serve(own.url);
      try {
        expect(off.info).toMatchObject({ console_url: null, metrics_url: null });
        expect(off.stderr()).toContain(
          'operator console off until an operator exists (leash operators add NAME) or LEASH_ADMIN_TOKEN is set',
        );
        const metrics = await fetch(`${off.info.url}/metrics`);
        expect(metrics.status).toBe(404);
        expect(((await metrics.json()) as { error: string }).error).toContain('leash operators add');
      } finally {
        await off.stop();
      }

      const ownEnv = { ...env, DATABASE_URL: own.url };
      const added = await Promise.all(['mo', 'nell'].map((n) => cli(['operators', 'add', n], ownEnv)));
      const [mo = '', nell = ''] = added.map((r) => r.stdout.trim());
      tokens.push(mo, nell);
      const on = await serve(own.url);
      try {
        expect(on.info.console_url).toBe(`${on.info.url}/console`);
        expect(on.info.metrics_url).toBe(`${on.info.url}/metrics`);
        expect(on.stderr()).toContain(`operator console at ${on.info.url}/console\n`);
        const scrape = (token?: string) =>
          fetch(`${on.info.url}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
        const ok = await scrape(mo);
        expect(ok.status).toBe(200);
        expect(await ok.text()).toContain('leash_calls_total');
        expect((await scrape()).status).toBe(401);
        expect((await scrape(`lso_${'c'.repeat(52)}`)).status).toBe(401);
        // A removed operator's token is refused from the next scrape on.
        expect((await cli(['operators', 'remove', 'nell'], ownEnv)).code).toBe(0);
        expect((await scrape(nell)).status).toBe(401);
        expect((await scrape(mo)).status).toBe(200);
        for (const t of [mo, nell]) expect(on.stderr()).not.toContain(t.slice(4));
      } finally {
        await on.stop();
      }
    } finally {
      await own.close();
    }
  });
});

describe('canary', () => {
  it('no operator token is anywhere in the database, the server log or the alerts', async () => {
    // Tokens of its own, used at every door, so the scan has something to find wherever this test runs; it scans
    // for every token the other tests printed too.
    const own: string[] = [];
    for (const n of ['canary-1', 'canary-2', 'canary-3', 'canary-4', 'canary-5'])
      own.push(await addOperator(n));
    const [api = '', web = '', wrong = '', gone = '', scraped = ''] = own;
    for (const t of own) expect((await admin('/admin/whoami', t)).status).toBe(200);
    const k = await keyFor(tdb.db, { policy: 'ops', agent: 'canary-revoke', runId: 'r-canary' });
    const revoked = await admin(`/admin/keys/${k.id}/revoke`, api, {
      method: 'POST',
      body: JSON.stringify({ reason: 'canary' }),
    });
    expect(await revoked.json()).toEqual({ revoked: [k.id] });
    const s = await consoleSignIn(web);
    const held = await heldCall('canary-approve');
    expect((await consolePost(s, `/console/api/approvals/${held}/approve`, {})).status).toBe(200);
    for (const bad of [wrong.slice(0, -1), `${wrong}x`])
      expect((await admin('/admin/keys', bad)).status).toBe(401);
    expect((await leash(['operators', 'remove', 'canary-4'])).code).toBe(0);
    expect((await admin('/admin/whoami', gone)).status).toBe(401);
    expect((await admin('/admin/audit?agent=canary-approve', scraped)).status).toBe(200);

    expect(tokens.length).toBeGreaterThan(4);
    const { rows: tables } = await tdb.pool.query<{ table_name: string }>(
      `select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'`,
    );
    let dump = '';
    for (const t of tables) {
      const { rows } = await tdb.pool.query<{ t: string | null }>(
        `select string_agg(row_to_json(x)::text, E'\\n') as t from "${t.table_name}" x`,
      );
      dump += rows[0]?.t ?? '';
    }
    expect(dump).toContain('operator.add'); // the dump did read the tables
    await alerts.drain(WAIT_MS);
    const sent = hook.received.map((r) => r.body).join('\n');
    for (const token of tokens) {
      const secret = token.slice(4);
      expect(dump).not.toContain(secret);
      expect(logLines.join('\n')).not.toContain(secret);
      expect(sent).not.toContain(secret);
    }
  });
});
