// leash as an OAuth 2.1 resource server (issue 29): a real authorization server (oidc-provider) in the run, the MCP
// SDK's own client OAuth flow (discovery after the first 401, registration, authorization code + PKCE) and its
// client-credentials provider, bindings made with `leash keys create --oauth-subject`, every refusal with its
// RFC 6750 answer, key rotation at the issuer, and no token in logs or audit rows.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError, type OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { importJWK, SignJWT, base64url } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/config/logger.js';
import { createPipeline, type PipelineDeps } from '../src/pipeline/run-tool.js';
import { startHttpServer, type RunningHttp } from '../src/server/http.js';
import { catalog } from '../tools/index.js';
import { freshDatabase, type TestDatabase } from './support/database.js';
import { applyTestPolicy, TEST_VENDOR_TIMEOUT_MS, testConfig } from './support/governance.js';
import {
  INTROSPECTOR,
  ROBOT,
  SCOPE,
  signingKey,
  startIssuer,
  type TestIssuer,
} from './support/oauth-issuer.js';
import { cli } from './support/run-cli.js';
import { startVendors, type Vendors } from './support/vendors.js';

let tdb: TestDatabase;
let vendors: Vendors;
let issuer: TestIssuer;
let deps: PipelineDeps;
let http: RunningHttp;
let env: Record<string, string>;
let resource: string;
/** The robot client's binding (beforeAll). */
let robotKeyId: string;
const logs: string[] = [];
/** Every token this file was given or made: none may appear in a log line or an audit row. */
const tokens: string[] = [];

const SMS = { to: '+15551234567', body: 'your order shipped' };

beforeAll(async () => {
  tdb = await freshDatabase(8);
  vendors = await startVendors();
  issuer = await startIssuer();
  env = {
    ...vendors.env,
    DATABASE_URL: tdb.url,
    LEASH_HOME: '/nonexistent/leash-oauth',
    LEASH_LOG: 'silent',
    LEASH_OAUTH_ISSUER: issuer.url,
    LEASH_OAUTH_INTROSPECTION_CLIENT_ID: INTROSPECTOR.id,
    LEASH_OAUTH_INTROSPECTION_CLIENT_SECRET: INTROSPECTOR.secret,
  };
  deps = createPipeline({
    db: tdb.db,
    config: testConfig(env),
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'debug' }, (l) => logs.push(l)),
    vendorTimeoutMs: TEST_VENDOR_TIMEOUT_MS,
  });
  await applyTestPolicy(tdb.db, catalog, {
    name: 'texts',
    limits: { daily_usd: 5 },
    tools: { send_sms: { from: '+15550001111', to_prefixes: ['+1'] }, get_budget: {} },
  });
  // A JWKS fetched again at once for an unknown kid (production waits 30 s between such fetches).
  http = await startHttpServer(deps, { host: '127.0.0.1', port: 0, oauth: { jwksCooldownMs: 0 } });
  resource = `${http.url}/mcp`;
  // The robot's binding, made with --oauth-client as a headless agent's is: every test that needs a token leash
  // accepts (client credentials, opaque tokens, key rotation, the REST door, the canary) uses the robot's.
  // oidc-provider gives a client-credentials token the client's id as client_id and no sub of a user: the IdP's
  // subject for the client is its id, as the binding names it.
  robotKeyId = await bind([
    '--agent',
    'robot-agent',
    '--oauth-subject',
    await robotSubject(),
    '--oauth-client',
    ROBOT.id,
  ]);
});

afterAll(async () => {
  await http?.close();
  await deps?.settler.flush();
  await issuer?.close();
  await vendors?.close();
  await tdb?.close();
});

async function bind(args: string[]): Promise<string> {
  const r = await cli(['keys', 'create', '--policy', 'texts', '--expires-in', '1h', '--json', ...args], env);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return (JSON.parse(r.stdout) as { id: string }).id;
}

/** The subject the issuer gives the robot's client-credentials tokens (its binding names it). */
async function robotSubject(): Promise<string> {
  const token = await issuer.clientCredentials(resource);
  tokens.push(token);
  const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as {
    sub?: string;
  };
  return claims.sub ?? ROBOT.id;
}

/** A POST to /mcp with this bearer token (tools/list), answered raw. */
function post(token: string | undefined) {
  return fetch(resource, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });
}

/** A JWT signed by `key` (the issuer's own unless told), valid for leash unless `claims` say otherwise. */
async function mint(
  claims: Record<string, unknown>,
  o: { key?: Awaited<ReturnType<typeof signingKey>>; kid?: string | null } = {},
) {
  const key = o.key ?? issuer.key;
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT({
    iss: issuer.url,
    aud: resource,
    sub: 'mallory',
    client_id: 'robot',
    scope: SCOPE,
    iat: now,
    exp: now + 300,
    jti: `j-${Math.random().toString(36).slice(2)}`,
    ...claims,
  });
  const header = o.kid === null ? { alg: 'ES256' } : { alg: 'ES256', kid: o.kid ?? key.kid };
  const token = await jwt.setProtectedHeader(header).sign(await importJWK(key, 'ES256'));
  tokens.push(token);
  return token;
}

async function connect(authProvider: OAuthClientProvider) {
  const client = new Client({ name: 'oauth-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(resource), { authProvider }));
  return client;
}

/** An MCP host as the SDK has it: no browser, so "redirecting" follows the authorization URL headlessly. */
class HeadlessHost implements OAuthClientProvider {
  readonly redirectUrl = 'http://127.0.0.1:9/callback';
  info: OAuthClientInformationMixed | undefined;
  saved: OAuthTokens | undefined;
  verifier = '';
  code: Promise<string> | undefined;
  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: 'headless host',
      redirect_uris: [this.redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(t: OAuthTokens) {
    this.saved = t;
    tokens.push(t.access_token);
    if (t.refresh_token) tokens.push(t.refresh_token);
  }
  redirectToAuthorization(url: URL) {
    this.code = issuer.authorize(url, this.redirectUrl);
  }
  saveCodeVerifier(v: string) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
}

const sms = (client: Client) =>
  client.callTool({ name: 'send_sms', arguments: SMS }) as Promise<CallToolResult>;

describe('discovery', () => {
  it('serves Protected Resource Metadata at both well-known paths, and every 401 points at it', async () => {
    for (const path of [
      '/.well-known/oauth-protected-resource/mcp',
      '/.well-known/oauth-protected-resource',
    ]) {
      const res = await fetch(`${http.url}${path}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({
        resource,
        authorization_servers: [issuer.url],
        scopes_supported: [SCOPE],
        bearer_methods_supported: ['header'],
      });
    }
    const metadata = `resource_metadata="${http.url}/.well-known/oauth-protected-resource/mcp"`;
    for (const token of [undefined, 'lsk_aaaaaaaaaaaa_bbbb', 'not-a-token']) {
      const res = await post(token);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain(metadata);
      expect(res.headers.get('www-authenticate')).toContain(`scope="${SCOPE}"`);
    }
  });
});

describe('an MCP host through the authorization code flow', () => {
  it('discovers the issuer after a 401, registers, logs in with PKCE, and calls tools as the bound agent', async () => {
    const keyId = await bind(['--agent', 'support-bot', '--oauth-subject', issuer.user]);
    const host = new HeadlessHost();
    // First connect: 401 → the SDK reads leash's metadata and the issuer's, registers, and "redirects".
    await expect(connect(host)).rejects.toBeInstanceOf(UnauthorizedError);
    expect(host.info?.client_id).toBeTruthy();
    const code = await host.code!;
    const transport = new StreamableHTTPClientTransport(new URL(resource), { authProvider: host });
    await transport.finishAuth(code);
    expect(host.saved?.access_token).toBeTruthy();
    const client = new Client({ name: 'oauth-test', version: '1.0.0' });
    await client.connect(transport);

    const listed = await client.listTools();
    expect(listed.tools.map((t) => t.name).sort()).toEqual(['get_budget', 'send_sms']);
    vendors.reset();
    const ok = await sms(client);
    expect(ok.isError).toBeFalsy();
    expect(vendors.twilio.received).toHaveLength(1);
    // Governed by the bound policy: a number outside +1 is refused and the vendor hears nothing.
    const refused = await client.callTool({ name: 'send_sms', arguments: { ...SMS, to: '+447700900123' } });
    expect(refused.isError).toBe(true);
    expect(vendors.twilio.received).toHaveLength(1);
    await client.close();

    await deps.settler.flush();
    const rows = await tdb.db
      .selectFrom('audit_log')
      .select(['key_id', 'agent', 'decision', 'metadata'])
      .where('key_id', '=', keyId)
      .orderBy('ts')
      .execute();
    expect(rows.map((r) => r.decision)).toEqual(['allowed', 'denied']);
    for (const r of rows) {
      expect(r.agent).toBe('support-bot');
      const oauth = (r.metadata as { oauth?: Record<string, unknown> }).oauth;
      expect(oauth).toMatchObject({ sub: issuer.user, client_id: host.info?.client_id, issuer: issuer.url });
      expect(typeof oauth?.jti).toBe('string');
    }
  });
});

describe('a headless agent with client credentials', () => {
  it('is accepted for a binding made with --oauth-client, and its agent loop calls tools', async () => {
    // The binding is the robot's (beforeAll); other tests call with the robot's tokens too, so only the rows of this
    // test's calls are counted.
    const before = await tdb.db
      .selectFrom('audit_log')
      .select('id')
      .where('key_id', '=', robotKeyId)
      .execute();
    const client = await connect(
      new ClientCredentialsProvider({
        clientId: ROBOT.id,
        clientSecret: ROBOT.secret,
        scope: SCOPE,
        expectedIssuer: issuer.url,
      }),
    );
    vendors.reset();
    for (let i = 0; i < 2; i++) {
      const r = await client.callTool({ name: 'send_sms', arguments: { ...SMS, body: `loop ${i}` } });
      expect(r.isError).toBeFalsy();
    }
    expect(vendors.twilio.received).toHaveLength(2);
    await client.close();
    const rows = await tdb.db
      .selectFrom('audit_log')
      .select('agent')
      .where('key_id', '=', robotKeyId)
      .$if(before.length > 0, (q) =>
        q.where(
          'id',
          'not in',
          before.map((r) => r.id),
        ),
      )
      .execute();
    expect(rows.map((r) => r.agent)).toEqual(['robot-agent', 'robot-agent']);
  });

  it('is refused when the binding names another client', async () => {
    await bind(['--agent', 'other-client', '--oauth-subject', 'carol', '--oauth-client', 'not-robot']);
    const res = await post(await mint({ sub: 'carol', client_id: ROBOT.id }));
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(res.headers.get('www-authenticate')).toContain('key_invalid');
  });
});

describe('refusals', () => {
  beforeAll(async () => {
    await bind(['--agent', 'mallory-agent', '--oauth-subject', 'mallory']);
  });

  it('accepts a well-formed token for the bound subject (the baseline every refusal below changes one thing of)', async () => {
    const res = await post(await mint({}));
    expect(res.status).toBe(200);
  });

  const cases: [string, () => Promise<string>, string][] = [
    ['an expired token', () => mint({ exp: Math.floor(Date.now() / 1000) - 120 }), 'token expired'],
    ['a token for another resource', () => mint({ aud: 'https://other.example/mcp' }), 'aud'],
    ['a token from another issuer', () => mint({ iss: 'https://evil.example' }), 'iss'],
    ['a token with no kid', () => mint({}, { kid: null }), 'kid'],
    [
      'a token signed by a key the issuer never published',
      async () => mint({}, { key: await signingKey() }),
      'unknown key',
    ],
    [
      'an unsigned token (alg none)',
      () => {
        const enc = (o: unknown) => base64url.encode(JSON.stringify(o));
        const now = Math.floor(Date.now() / 1000);
        const t = `${enc({ alg: 'none', kid: issuer.key.kid })}.${enc({ iss: issuer.url, aud: resource, sub: 'mallory', scope: SCOPE, exp: now + 300 })}.`;
        tokens.push(t);
        return Promise.resolve(t);
      },
      'algorithm',
    ],
    [
      'a token signed HS256 with the issuer’s public key',
      async () => {
        const { d: _private, ...publicJwk } = issuer.key;
        const now = Math.floor(Date.now() / 1000);
        const t = await new SignJWT({
          iss: issuer.url,
          aud: resource,
          sub: 'mallory',
          scope: SCOPE,
          exp: now + 300,
        })
          .setProtectedHeader({ alg: 'HS256', kid: issuer.key.kid })
          .sign(new TextEncoder().encode(JSON.stringify(publicJwk)));
        tokens.push(t);
        return t;
      },
      'algorithm',
    ],
  ];

  it.each(cases)('refuses %s with 401 invalid_token', async (_name, make, why) => {
    vendors.reset();
    const res = await post(await make());
    expect(res.status).toBe(401);
    const header = res.headers.get('www-authenticate') ?? '';
    expect(header).toContain('error="invalid_token"');
    expect(header).toContain(why);
    expect(header).toContain('resource_metadata=');
    expect(vendors.requests()).toBe(0);
  });

  it('refuses a token without the scope with 403 insufficient_scope naming it', async () => {
    const res = await post(await mint({ scope: 'other:scope' }));
    expect(res.status).toBe(403);
    const header = res.headers.get('www-authenticate') ?? '';
    expect(header).toContain('error="insufficient_scope"');
    expect(header).toContain(`scope="${SCOPE}"`);
    expect(header).toContain(`resource_metadata="${http.url}/.well-known/oauth-protected-resource/mcp"`);
  });

  it('refuses a valid token with no binding (key_invalid; the reason is logged, not told)', async () => {
    const res = await post(await mint({ sub: 'nobody-bound' }));
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('error_description="key_invalid"');
    expect(logs.some((l) => l.includes('no binding') && l.includes('nobody-bound'))).toBe(true);
  });

  it('admits nothing once the binding is revoked, on the replica that had it cached too', async () => {
    const keyId = await bind(['--agent', 'revoked-agent', '--oauth-subject', 'dave']);
    const token = await mint({ sub: 'dave' });
    const client = new Client({ name: 'oauth-test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(resource), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    );
    vendors.reset();
    expect((await sms(client)).isError).toBeFalsy(); // the binding is cached now
    expect((await cli(['keys', 'revoke', keyId], env)).code).toBe(0);
    const after = await sms(client);
    expect(after.isError).toBe(true);
    expect(after.structuredContent).toMatchObject({ code: 'key_revoked' });
    expect(vendors.twilio.received).toHaveLength(1);
    await client.close();
    // A listing looks the binding up afresh and is refused; from then on the door answers 401 before any call.
    const listing = await post(token);
    const refusedHow = `${listing.headers.get('www-authenticate') ?? ''} ${await listing.text()}`;
    expect(refusedHow).toContain('key_revoked');
    const res = await post(token);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('error_description="key_revoked"');
    const rows = await tdb.db
      .selectFrom('audit_log')
      .select('decision')
      .where('key_id', '=', keyId)
      .orderBy('ts')
      .execute();
    expect(rows.map((r) => r.decision)).toEqual(['allowed', 'denied']);
  });

  it('accepts an opaque token through the issuer’s introspection endpoint, and refuses one for another resource', async () => {
    const token = await issuer.clientCredentials(resource, SCOPE, 'opaque');
    tokens.push(token);
    expect(token.split('.')).toHaveLength(1);
    expect((await post(token)).status).toBe(200); // the robot's binding (beforeAll)
    const other = await issuer.clientCredentials('https://other.example/mcp', SCOPE, 'opaque');
    tokens.push(other);
    const res = await post(other);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('aud');
  });
});

describe('key rotation at the issuer', () => {
  it('accepts a token signed by the new key without restarting leash', async () => {
    const before = await issuer.clientCredentials(resource);
    tokens.push(before);
    expect((await post(before)).status).toBe(200);
    const oldKid = issuer.key.kid;
    await issuer.rotate();
    expect(issuer.key.kid).not.toBe(oldKid);
    const after = await issuer.clientCredentials(resource);
    tokens.push(after);
    expect(JSON.parse(Buffer.from(after.split('.')[0] ?? '', 'base64url').toString())).toMatchObject({
      kid: issuer.key.kid,
    });
    expect((await post(after)).status).toBe(200);
  });
});

describe('the REST door and vault keys', () => {
  it('keeps the REST door vault-key only: an accepted access token is refused there', async () => {
    const token = await issuer.clientCredentials(resource);
    tokens.push(token);
    expect((await post(token)).status).toBe(200);
    vendors.reset();
    const res = await fetch(`${http.url}/2010-04-01/Accounts/AC${'c4'.repeat(16)}/Messages.json`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ To: SMS.to, Body: SMS.body }).toString(),
    });
    expect(res.status).not.toBe(200);
    expect(vendors.requests()).toBe(0);
  });
});

describe('canary', () => {
  it('never writes a token to the logs or the audit log', async () => {
    // Makes and uses a token of every kind itself, so the scan holds wherever this test runs (it scans the tokens of
    // the tests that ran before it too).
    // An MCP host's access and refresh tokens (authorization code + PKCE), bound to the client it registers.
    const host = new HeadlessHost();
    await expect(connect(host)).rejects.toBeInstanceOf(UnauthorizedError);
    const hostClient = host.info?.client_id;
    expect(hostClient).toBeTruthy();
    await bind([
      '--agent',
      'canary-host',
      '--oauth-subject',
      issuer.user,
      '--oauth-client',
      String(hostClient),
    ]);
    const transport = new StreamableHTTPClientTransport(new URL(resource), { authProvider: host });
    await transport.finishAuth(await host.code!);
    const hosted = new Client({ name: 'oauth-test', version: '1.0.0' });
    await hosted.connect(transport);
    expect((await sms(hosted)).isError).toBeFalsy();
    await hosted.close();
    // The robot's client-credentials tokens, JWT and opaque, and a token signed for a bound subject of its own.
    await bind(['--agent', 'canary-agent', '--oauth-subject', 'canary']);
    const accepted = [
      await issuer.clientCredentials(resource),
      await issuer.clientCredentials(resource, SCOPE, 'opaque'),
    ];
    tokens.push(...accepted);
    accepted.push(await mint({ sub: 'canary' }));
    for (const token of accepted) {
      const client = new Client({ name: 'oauth-test', version: '1.0.0' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(resource), {
          requestInit: { headers: { authorization: `Bearer ${token}` } },
        }),
      );
      expect((await sms(client)).isError).toBeFalsy();
      await client.close();
    }
    // Refused tokens, whose refusals are logged.
    const refused = [
      await mint({ sub: 'canary', exp: Math.floor(Date.now() / 1000) - 120 }),
      await mint({ sub: 'canary', aud: 'https://other.example/mcp' }),
      await mint({ sub: 'canary', iss: 'https://evil.example' }),
      await mint({ sub: 'canary' }, { kid: null }),
      await mint({ sub: 'canary' }, { key: await signingKey() }),
      await mint({ sub: 'canary-nobody-bound' }),
    ];
    for (const token of refused) expect((await post(token)).status).toBe(401);
    expect((await post(await mint({ sub: 'canary', scope: 'other:scope' }))).status).toBe(403);

    await deps.settler.flush();
    expect(tokens.length).toBeGreaterThan(10);
    const rows = JSON.stringify(await tdb.db.selectFrom('audit_log').selectAll().execute());
    const actions = JSON.stringify(await tdb.db.selectFrom('operator_actions').selectAll().execute());
    const text = logs.join('\n');
    expect(logs.length).toBeGreaterThan(0);
    for (const t of tokens) {
      // The signature part alone is unique to the token and long enough not to occur by chance.
      const tail = t.split('.').at(-1) || t;
      for (const where of [rows, actions, text]) expect(where.includes(tail)).toBe(false);
    }
  });
});
