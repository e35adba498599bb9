// OAuth configuration (issue 29): off unless LEASH_OAUTH_ISSUER is set, defaults, and bad values named; and the
// CLI's bindings: one active binding per identity, no secret to rotate, an issuer required.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/config.js';
import { catalog, catalogVendors } from '../tools/index.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy } from './support/governance.js';
import { cli } from './support/run-cli.js';

const load = (env: Record<string, string>) =>
  loadConfig({ LEASH_HOME: '/nonexistent', ...env }, catalogVendors);

describe('OAuth configuration', () => {
  it('is off without LEASH_OAUTH_ISSUER, and refuses its other variables alone', () => {
    expect(load({}).oauth).toBeUndefined();
    expect(() => load({ LEASH_OAUTH_SCOPES: 'leash:tools' })).toThrow(
      /LEASH_OAUTH_SCOPES is set but LEASH_OAUTH_ISSUER is not/,
    );
  });

  it('defaults the scope to leash:tools and the audience to the public /mcp URL (decided when serving)', () => {
    expect(load({ LEASH_OAUTH_ISSUER: 'https://id.example.com/realms/x' }).oauth).toEqual({
      issuer: 'https://id.example.com/realms/x',
      audience: undefined,
      scopes: ['leash:tools'],
      introspection: undefined,
    });
    const o = load({
      LEASH_OAUTH_ISSUER: 'http://localhost:8080',
      LEASH_OAUTH_AUDIENCE: 'api://leash',
      LEASH_OAUTH_SCOPES: 'leash:tools  leash:read',
    }).oauth;
    expect(o?.audience).toBe('api://leash');
    expect(o?.scopes).toEqual(['leash:tools', 'leash:read']);
  });

  it.each([
    [{ LEASH_OAUTH_ISSUER: 'http://id.example.com' }, /https URL[\s\S]*LEASH_OAUTH_ISSUER/],
    [{ LEASH_OAUTH_ISSUER: 'https://id.example.com/?tenant=1' }, /LEASH_OAUTH_ISSUER/],
    [{ LEASH_OAUTH_ISSUER: 'https://id.example.com', LEASH_OAUTH_SCOPES: 'a "b"' }, /LEASH_OAUTH_SCOPES/],
    [
      { LEASH_OAUTH_ISSUER: 'https://id.example.com', LEASH_OAUTH_AUDIENCE: 'not a uri' },
      /LEASH_OAUTH_AUDIENCE/,
    ],
    [
      { LEASH_OAUTH_ISSUER: 'https://id.example.com', LEASH_OAUTH_INTROSPECTION_CLIENT_ID: 'leash' },
      /LEASH_OAUTH_INTROSPECTION_CLIENT_SECRET/,
    ],
  ])('refuses %o, naming the variable', (env, message) => {
    expect(() => load(env)).toThrow(message);
  });
});

describe('keys create --oauth-subject', () => {
  let tdb: TestDatabase;
  let env: Record<string, string>;
  beforeAll(async () => {
    tdb = await freshDatabase(2);
    await applyTestPolicy(tdb.db, catalog, { name: 'p', tools: { get_budget: {} } });
    env = {
      DATABASE_URL: tdb.url,
      LEASH_HOME: '/nonexistent/leash-oauth-config',
      LEASH_LOG: 'silent',
      LEASH_OAUTH_ISSUER: 'https://id.example.com',
    };
  });
  afterAll(async () => {
    await tdb?.close();
  });

  it('makes a binding with no secret, refuses a second active one for the same identity, and cannot rotate it', async () => {
    const args = [
      'keys',
      'create',
      '--agent',
      'a',
      '--policy',
      'p',
      '--oauth-subject',
      'alice',
      '--expires-in',
      '1h',
    ];
    const first = await cli([...args, '--json'], env);
    expect(first.code).toBe(0);
    const made = JSON.parse(first.stdout) as { id: string; key?: string; oauth: unknown };
    expect(made.key).toBeUndefined();
    expect(made.oauth).toEqual({ issuer: 'https://id.example.com', subject: 'alice', client: null });
    const second = await cli(args, env);
    expect(second.code).not.toBe(0);
    expect(second.stderr).toContain(`key ${made.id} already binds this subject`);
    // Another client of the same subject is another identity.
    expect((await cli([...args, '--oauth-client', 'robot'], env)).code).toBe(0);
    const rotate = await cli(['keys', 'rotate', made.id], env);
    expect(rotate.code).not.toBe(0);
    expect(rotate.stdout).not.toMatch(/lsk_/);
    // Revoked, the identity may be bound again.
    expect((await cli(['keys', 'revoke', made.id], env)).code).toBe(0);
    expect((await cli(args, env)).code).toBe(0);
  });

  it('needs an issuer, and --oauth-client only with --oauth-subject', async () => {
    const { LEASH_OAUTH_ISSUER: _issuer, ...noIssuer } = env;
    const r = await cli(
      ['keys', 'create', '--agent', 'a', '--policy', 'p', '--oauth-subject', 'bob'],
      noIssuer,
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('LEASH_OAUTH_ISSUER');
    const c = await cli(['keys', 'create', '--agent', 'a', '--policy', 'p', '--oauth-client', 'x'], env);
    expect(c.code).toBe(2);
    expect(c.stderr).toContain('--oauth-client');
  });
});
