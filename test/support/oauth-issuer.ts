// A real OAuth 2.1 authorization server for tests: oidc-provider (OpenID certified) in-process on port 0, with
// resource indicators (JWT access tokens for the resource asked for), dynamic client registration, client
// credentials, introspection, and an interaction that logs the user in and consents by itself. `rotate()` swaps the
// signing key at the same issuer URL, as an identity provider's key rotation does.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';

export const SCOPE = 'leash:tools';
export const ROBOT = { id: 'robot', secret: 'robot-secret-0123456789-abcdefghij' };
export const INTROSPECTOR = { id: 'leash-introspector', secret: 'introspector-secret-0123456789-abc' };

export interface TestIssuer {
  url: string;
  /** The private signing key in use (tests sign their own expired or wrong tokens with it). */
  key: JWK & { kid: string };
  /** The user the interaction logs in. */
  user: string;
  /** Replaces the signing key (new kid); tokens minted afterwards are signed with it. */
  rotate(): Promise<void>;
  /** A client-credentials token for `resource`, with `scope` (default leash:tools; '' for none). */
  clientCredentials(resource: string, scope?: string, format?: 'jwt' | 'opaque'): Promise<string>;
  /** Follows an authorization URL as a browser would, logging in and consenting; the code at the redirect URI. */
  authorize(url: URL, redirectUri: string): Promise<string>;
  close(): Promise<void>;
}

export async function signingKey(): Promise<JWK & { kid: string }> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg: 'ES256', use: 'sig', kid: `k${Math.random().toString(36).slice(2, 10)}` };
}

export async function startIssuer(o: { user?: string } = {}): Promise<TestIssuer> {
  const user = o.user ?? 'alice';
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end();
  const server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let format: 'jwt' | 'opaque' = 'jwt';

  const build = (key: JWK) => {
    const provider = new Provider(url, {
      clients: [
        {
          client_id: ROBOT.id,
          client_secret: ROBOT.secret,
          grant_types: ['client_credentials'],
          redirect_uris: [],
          response_types: [],
          id_token_signed_response_alg: 'ES256',
        },
        {
          client_id: INTROSPECTOR.id,
          client_secret: INTROSPECTOR.secret,
          grant_types: [],
          redirect_uris: [],
          response_types: [],
          id_token_signed_response_alg: 'ES256',
        },
      ],
      jwks: { keys: [key] },
      clientDefaults: { id_token_signed_response_alg: 'ES256' },
      // leash:tools is the resource server's scope (getResourceServerInfo); listed here too so registration accepts it.
      scopes: ['openid', 'offline_access', SCOPE],
      features: {
        devInteractions: { enabled: false },
        registration: { enabled: true },
        clientCredentials: { enabled: true },
        introspection: { enabled: true },
        resourceIndicators: {
          enabled: true,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource) => ({
            scope: `${SCOPE} other:scope`,
            audience: resource,
            accessTokenTTL: 300,
            accessTokenFormat: format,
            ...(format === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}),
          }),
        },
      },
      pkce: { required: () => true },
      findAccount: (_ctx, id) => Promise.resolve({ accountId: id, claims: () => ({ sub: id }) }),
      interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
      // Consent given by itself: the grant the host asked for (its scope on its resource) is made on the spot.
      async loadExistingGrant(ctx: KoaContextWithOIDC) {
        const accountId = ctx.oidc.session?.accountId;
        const clientId = ctx.oidc.client?.clientId;
        if (!accountId || !clientId) return undefined;
        const grant = new ctx.oidc.provider.Grant({ accountId, clientId });
        grant.addOIDCScope(`openid offline_access ${SCOPE}`);
        for (const resource of Object.keys(ctx.oidc.resourceServers ?? {}))
          grant.addResourceScope(resource, SCOPE);
        const params = ctx.oidc.params as { resource?: string | string[] } | undefined;
        const asked = params?.resource;
        for (const resource of Array.isArray(asked) ? asked : asked ? [asked] : [])
          grant.addResourceScope(resource, SCOPE);
        await grant.save();
        return grant;
      },
    });
    const callback = provider.callback();
    handler = (req, res) => {
      const m = /^\/interaction\/([\w-]+)/.exec(req.url ?? '');
      if (!m) return void callback(req, res);
      provider
        .interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false })
        .catch(() => {
          res.statusCode = 500;
          res.end();
        });
    };
    return provider;
  };

  let key = await signingKey();
  build(key);

  const form = async (path: string, body: Record<string, string>, auth: { id: string; secret: string }) => {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${auth.id}:${auth.secret}`).toString('base64')}`,
      },
      body: new URLSearchParams(body).toString(),
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };

  return {
    url,
    get key() {
      return key;
    },
    user,
    async rotate() {
      key = await signingKey();
      build(key);
    },
    async clientCredentials(resource, scope = SCOPE, f = 'jwt') {
      format = f;
      try {
        const body: Record<string, string> = { grant_type: 'client_credentials', resource };
        if (scope) body.scope = scope;
        const t = await form('/token', body, ROBOT);
        return String(t.access_token);
      } finally {
        format = 'jwt';
      }
    },
    async authorize(start, redirectUri) {
      const jar = new Map<string, string>();
      let next = start.href;
      for (let hop = 0; hop < 12; hop++) {
        if (next.startsWith(redirectUri)) {
          const code = new URL(next).searchParams.get('code');
          if (!code) throw new Error(`no code at the redirect: ${next}`);
          return code;
        }
        const res = await fetch(next, {
          redirect: 'manual',
          headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
        });
        for (const c of res.headers.getSetCookie()) {
          const pair = c.split(';')[0] ?? '';
          const i = pair.indexOf('=');
          jar.set(pair.slice(0, i), pair.slice(i + 1));
        }
        const text = await res.text();
        const location = res.headers.get('location');
        if (!location) throw new Error(`authorization stopped at ${res.status}: ${text.slice(0, 300)}`);
        next = new URL(location, next).href;
      }
      throw new Error('too many redirects');
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
