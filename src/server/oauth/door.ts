// leash as an OAuth 2.1 resource server on /mcp (issue 29), built only when LEASH_OAUTH_ISSUER is set: the Protected
// Resource Metadata (RFC 9728) that sends an MCP host to the operator's authorization server, and the check of an
// access token by the MCP SDK's own bearer middleware (RFC 6750 answers: 401 invalid_token, 403 insufficient_scope,
// each with resource_metadata) over a verifier that uses jose.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { OAuthProtectedResourceMetadata } from '@modelcontextprotocol/sdk/shared/auth.js';
import type { OAuthConfig } from '../../config/config.js';
import type { Logger } from '../../config/logger.js';
import { sendJson } from '../../http/kit.js';
import { createIssuer, type IssuerOptions } from './issuer.js';
import { createVerifier, type TokenIdentity } from './verifier.js';

const WELL_KNOWN = '/.well-known/oauth-protected-resource';

/** requireBearerAuth's handler as leash calls it (its declared type names Express's, which leash does not install). */
type Middleware = (req: unknown, res: unknown, next: () => void) => Promise<void>;

/**
 * The Protected Resource Metadata URL of a resource (RFC 9728 §3.1: the well-known path, then the resource's path),
 * as the SDK's getOAuthProtectedResourceMetadataUrl builds it; that one lives in a module that loads Express.
 */
export function resourceMetadataUrl(resource: string): string {
  const u = new URL(resource);
  const path = u.pathname !== '/' ? u.pathname : '';
  return new URL(`${WELL_KNOWN}${path}`, u).href;
}

/** A verified token: who the issuer says is calling, and its client and id for the audit row. */
export interface VerifiedToken {
  identity: TokenIdentity;
  clientId: string | null;
}

/** How the door answered a token it did not accept: the status, headers and body the SDK's middleware chose. */
export interface TokenRefusal {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

export interface OAuthDoor {
  /** Answers GET `/.well-known/oauth-protected-resource[/mcp]`; false when the path is not its own. */
  metadata(req: IncomingMessage, res: ServerResponse, url: URL): boolean;
  /** The parameters a 401 from /mcp adds to `WWW-Authenticate: Bearer …` so a host can find the authorization server. */
  challenge(): string;
  /** Checks a request's bearer token: who is calling, or the refusal to send. */
  verify(
    req: IncomingMessage,
  ): Promise<{ ok: true; token: VerifiedToken } | { ok: false; refusal: TokenRefusal }>;
}

/** `resource`: leash's public /mcp URL (known once it listens). */
export function createOAuthDoor(
  config: OAuthConfig,
  resource: () => string,
  o: IssuerOptions & { log?: Logger } = {},
): OAuthDoor {
  const issuer = createIssuer(config.issuer, o);
  const audience = () => config.audience ?? resource();
  const verifier = createVerifier({
    issuer,
    audience,
    introspection: config.introspection,
    onUnavailable: (reason) => o.log?.error('oauth token could not be checked', { reason }),
  });
  const scope = config.scopes.join(' ');

  const document = (): OAuthProtectedResourceMetadata => ({
    resource: resource(),
    authorization_servers: [config.issuer],
    scopes_supported: [...config.scopes],
    bearer_methods_supported: ['header'],
    resource_name: 'leash',
  });

  return {
    metadata(req, res, url) {
      if (url.pathname !== WELL_KNOWN && !url.pathname.startsWith(`${WELL_KNOWN}/`)) return false;
      if (url.pathname !== WELL_KNOWN && url.pathname !== new URL(resourceMetadataUrl(resource())).pathname) {
        sendJson(res, 404, { error: 'not found' });
        return true;
      }
      // Public metadata: browser-based hosts read it from another origin.
      const cors = { 'access-control-allow-origin': '*', 'cache-control': 'max-age=300' };
      if (req.method === 'OPTIONS') {
        res.writeHead(204, {
          ...cors,
          'access-control-allow-methods': 'GET',
          'access-control-allow-headers': '*',
        });
        res.end();
      } else if (req.method !== 'GET' && req.method !== 'HEAD')
        sendJson(res, 405, { error: 'method not allowed' }, { allow: 'GET' });
      else sendJson(res, 200, document(), cors);
      return true;
    },

    challenge() {
      return `resource_metadata="${resourceMetadataUrl(resource())}", scope="${scope}"`;
    },

    async verify(req) {
      const middleware = requireBearerAuth({
        verifier,
        requiredScopes: [...config.scopes],
        resourceMetadataUrl: resourceMetadataUrl(resource()),
        expectedResource: new URL(audience()),
      }) as unknown as Middleware; // see Middleware
      // The SDK's middleware is written for Express; it uses only req.headers, req.auth and res.set/status/json,
      // which these two small objects give it, so its answer is sent by leash's own HTTP server.
      const shimReq: { headers: IncomingMessage['headers']; auth?: AuthInfo } = { headers: req.headers };
      const refusal: TokenRefusal = { status: 500, headers: {}, body: {} };
      const shimRes = {
        set(name: string, value: string) {
          refusal.headers[name.toLowerCase()] = value;
          return shimRes;
        },
        status(code: number) {
          refusal.status = code;
          return shimRes;
        },
        json(body: unknown) {
          refusal.body = body;
          return shimRes;
        },
      };
      let passed = false;
      await middleware(shimReq, shimRes, () => (passed = true));
      const info = shimReq.auth;
      const identity = info?.extra?.identity as TokenIdentity | undefined; // set by createVerifier
      if (!passed || !info || !identity) return { ok: false, refusal };
      return { ok: true, token: { identity, clientId: info.clientId || null } };
    },
  };
}
