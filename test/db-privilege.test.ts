// Covers least privilege inside the embedded Postgres: the URL leash prints is a non-superuser that owns the leash
// database, COPY … FROM PROGRAM is refused to it, the server processes do not inherit leash's secrets, and a
// server set up before the owner role is handed to it with its data.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { openDatabase } from '../src/db/database.js';
import { destroyEmbedded } from '../src/db/embedded.js';
import { readEmbedded } from '../src/db/embedded-record.js';
import { catalog } from '../tools/index.js';
import { childEnv, runLeash } from './support/cli.js';
import { applyTestPolicy, testConfig } from './support/governance.js';

const CANARY = {
  STRIPE_SECRET_KEY: 'sk_test_privCanaryStripe7f6e5d4c3b2a',
  LEASH_ADMIN_TOKEN: 'privCanaryAdminToken_0123456789abcdef',
  RESEND_API_KEY: 're_privCanaryResend_z9y8x7w6',
};

let home: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'leash-privilege-'));
  env = childEnv({ ...CANARY, LEASH_HOME: home, LEASH_LOG: 'silent' });
  const started = await runLeash(['db', 'start'], env);
  expect(started.code, started.stderr).toBe(0);
});

afterAll(async () => {
  await destroyEmbedded(home);
  await rm(home, { recursive: true, force: true });
});

async function printedUrl(): Promise<string> {
  const r = await runLeash(['db', 'url', '--json'], env);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { url: string }).url;
}

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

describe('least privilege in the embedded database', () => {
  it('prints a URL whose role is no superuser and owns what the migrations created', async () => {
    const url = await printedUrl();
    await withClient(url, async (c) => {
      const role = await c.query<{ rolsuper: boolean; rolcreaterole: boolean; rolcreatedb: boolean }>(
        'select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = current_user',
      );
      expect(role.rows).toEqual([{ rolsuper: false, rolcreaterole: false, rolcreatedb: false }]);
      const owners = await c.query<{ owner: string; me: string }>(
        `select pg_get_userbyid(c.relowner) as owner, current_user as me from pg_class c
          where c.oid in ('public.audit_log'::regclass, 'public.leash_migrations'::regclass)
         union all
         select pg_get_userbyid(p.proowner), current_user from pg_proc p where p.proname = 'leash_admit'`,
      );
      expect(owners.rows.length).toBe(3);
      for (const row of owners.rows) expect(row.owner).toBe(row.me);
    });
  });

  it('refuses COPY … FROM PROGRAM and server file reads to that role', async () => {
    await withClient(await printedUrl(), async (c) => {
      await c.query('create temp table out (line text)');
      await expect(c.query("copy out from program 'env'")).rejects.toMatchObject({ code: '42501' });
      await expect(c.query("select pg_read_file('postgresql.conf')")).rejects.toMatchObject({
        code: '42501',
      });
    });
  });

  it("keeps leash's secrets out of the environment postgres and its programs run with", async () => {
    // Postgres writes its process titles over /proc/<pid>/environ, so ask the server itself: as the superuser,
    // run `env` the way an attacker with COPY … FROM PROGRAM would.
    const stored = JSON.parse(await readFile(join(home, 'pg', 'server.json'), 'utf8')) as {
      adminUrl?: string;
      url: string;
    };
    const seen = await withClient(stored.adminUrl ?? stored.url, async (c) => {
      await c.query('create temp table seen (line text)');
      await c.query("copy seen from program 'env'");
      return (await c.query<{ line: string }>('select line from seen')).rows.map((r) => r.line);
    });
    expect(seen.some((l) => l.startsWith('PGDATA='))).toBe(true);
    for (const value of Object.values(CANARY)) expect(seen.join('\n')).not.toContain(value);
    // Only what postgres sets itself, the locale and PATH.
    const names = seen.map((l) => l.slice(0, l.indexOf('=')));
    expect(names.filter((n) => !/^(LC_[A-Z]+|PG[A-Z_]*|PATH|PWD|TZ|SHLVL|_)$/.test(n))).toEqual([]);
  });

  it('hands a server set up before the owner role (schema in `postgres`) to the owner, data and all', async () => {
    const server = await readEmbedded(home);
    if (!server) throw new Error('server.json missing');
    // Rebuild the old layout: leash's schema in the `postgres` database, owned by the bootstrap superuser.
    const legacy = await openDatabase(testConfig(), { url: server.adminUrl, poolMax: 1 });
    try {
      await applyTestPolicy(legacy.db, catalog, {
        name: 'from-before',
        limits: { daily_usd: 1 },
        tools: { get_budget: {} },
      });
    } finally {
      await legacy.close();
    }
    await withClient(server.adminUrl, async (c) => {
      await c.query('drop database leash with (force)');
      await c.query('drop role leash_owner');
    });
    const { adminUrl, database: _db, ...rest } = server;
    await writeFile(join(home, 'pg', 'server.json'), JSON.stringify({ ...rest, url: adminUrl }));

    const url = await printedUrl();
    expect(new URL(url).pathname).toBe('/postgres');
    await withClient(url, async (c) => {
      const role = await c.query<{ rolsuper: boolean }>(
        'select rolsuper from pg_roles where rolname = current_user',
      );
      expect(role.rows).toEqual([{ rolsuper: false }]);
      const policies = await c.query<{ name: string }>('select name from policies');
      expect(policies.rows.map((r) => r.name)).toContain('from-before');
      await c.query('update policies set updated_at = now()');
      const { rows } = await c.query<{ n: number }>(
        `select count(*)::int as n from pg_class
          where relnamespace = 'public'::regnamespace and relowner <> current_user::regrole`,
      );
      expect(rows[0]?.n).toBe(0);
    });
    const migrate = await runLeash(['db', 'migrate'], env);
    expect(migrate.code, migrate.stderr).toBe(0);
    // Runs every migration in a new process: slow on a busy machine.
  }, 300_000);
});

describe('DATABASE_URL with the grants the README lists', () => {
  it('migrates and writes as a role that only owns its database', async (ctx) => {
    const admin = inject('adminUrl');
    const suffix = randomBytes(4).toString('hex');
    const role = `leash_doc_${suffix}`;
    const password = randomBytes(12).toString('hex');
    const canCreate = await withClient(admin, async (c) =>
      c
        .query(
          `create role ${role} login password '${password}' nosuperuser nocreatedb nocreaterole noreplication`,
        )
        .then(() => c.query(`create database ${role} owner ${role}`))
        .then(() => true)
        .catch(() => false),
    );
    if (!canCreate) ctx.skip('the test database user may not create roles');
    try {
      const url = new URL(admin);
      url.username = role;
      url.password = password;
      url.pathname = `/${role}`;
      const dbEnv = childEnv({ DATABASE_URL: url.toString(), LEASH_HOME: home, LEASH_LOG: 'silent' });
      const migrate = await runLeash(['db', 'migrate', '--json'], dbEnv);
      expect(migrate.code, migrate.stderr).toBe(0);
      expect((JSON.parse(migrate.stdout) as { applied: string[] }).applied.length).toBeGreaterThan(0);
      const handle = await openDatabase(testConfig({ DATABASE_URL: url.toString() }), { poolMax: 1 });
      try {
        await applyTestPolicy(handle.db, catalog, {
          name: 'doc',
          limits: { daily_usd: 1 },
          tools: { get_budget: {} },
        });
      } finally {
        await handle.close();
      }
    } finally {
      await withClient(admin, async (c) => {
        await c.query(`drop database if exists ${role} with (force)`);
        await c.query(`drop role if exists ${role}`);
      });
    }
    // Runs every migration in a new process: slow on a busy machine.
  }, 300_000);
});
