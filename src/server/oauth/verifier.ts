// Checks an access token for leash, as the MCP SDK's bearer middleware asks its verifier to: a JWT against the
// issuer's published keys (jose), or an opaque token through the issuer's introspection endpoint (RFC 7662).
// Every refusal is an InvalidTokenError whose message says what was wrong and never quotes the token.
import type { OAuthTokenVerifier } from '@modelcontextprotocol/sdk/server/auth/provider.js';
import { InvalidTokenError, ServerError } from '@modelcontextprotocol/sdk/server/auth/errors.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { z } from 'zod';
import { IssuerUnavailable, type Issuer } from './issuer.js';

/** Signature algorithms accepted: asymmetric only, so a token "signed" with the issuer's public key (HS256) or none is refused. */
export const ACCEPTED_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;

/** Clock skew allowed on exp and nbf. */
export const LEEWAY_SECONDS = 30;
/** Longer bearer tokens are refused unread (an Entra token with many groups is ~4 KB). */
export const MAX_TOKEN_CHARS = 8192;

/** What leash keeps of a verified token besides AuthInfo's own fields: who the issuer says is calling. */
export interface TokenIdentity {
  issuer: string;
  subject: string;
  jti: string | null;
}

export interface VerifierOptions {
  issuer: Issuer;
  /** The `aud` a token must carry (RFC 8707: a token minted for another resource is refused). */
  audience: () => string;
  /** Client credentials for introspection; without them opaque tokens are refused. */
  introspection: Readonly<{ clientId: string; clientSecret: string }> | undefined;
  /** Told why a token could not be checked (the issuer unreachable, say); the message holds no token. */
  onUnavailable?: (reason: string) => void;
}

const text = (max: number) => z.string().min(1).max(max);
const introspectionSchema = z.looseObject({
  active: z.boolean(),
  scope: z.string().max(4096).optional(),
  client_id: text(256).optional(),
  sub: text(256).optional(),
  aud: z.union([z.string(), z.array(z.string()).max(50)]).optional(),
  iss: z.string().optional(),
  exp: z.number().optional(),
  nbf: z.number().optional(),
  jti: text(256).optional(),
});

/** `scope` (RFC 9068, space-separated) or `scp` (Okta and Entra: a list or a string). */
function scopesOf(claims: Readonly<Record<string, unknown>>): string[] {
  const raw = claims.scope ?? claims.scp;
  if (typeof raw === 'string') return raw.split(' ').filter(Boolean);
  if (Array.isArray(raw)) return raw.filter((s): s is string => typeof s === 'string');
  return [];
}

const stringClaim = (value: unknown, max = 256): string | null =>
  typeof value === 'string' && value.length > 0 && value.length <= max ? value : null;

/** A jose refusal as the caller may read it: which check failed, in leash's words. */
function refusal(error: unknown, onUnavailable?: (reason: string) => void): Error {
  if (error instanceof IssuerUnavailable) {
    onUnavailable?.(error.message);
    return new ServerError('the authorization server is unavailable');
  }
  if (error instanceof joseErrors.JWTExpired) return new InvalidTokenError('token expired');
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = ['iss', 'aud', 'nbf', 'exp', 'sub', 'iat'].includes(error.claim) ? error.claim : 'a claim';
    return new InvalidTokenError(
      claim === 'aud' ? 'token was not issued for this resource (aud)' : `token ${claim} not accepted`,
    );
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey)
    return new InvalidTokenError('token signed by an unknown key (kid)');
  if (error instanceof joseErrors.JOSEAlgNotAllowed)
    return new InvalidTokenError('token signature algorithm not accepted');
  if (error instanceof joseErrors.JWSSignatureVerificationFailed)
    return new InvalidTokenError('token signature is not valid');
  if (error instanceof joseErrors.JOSEError && !(error instanceof joseErrors.JWKSTimeout))
    return new InvalidTokenError('token is not a valid JWT');
  // A JWKS fetch that timed out or failed, or anything unexpected: the token cannot be checked now.
  onUnavailable?.(`the issuer's keys could not be read (${error instanceof Error ? error.name : 'unknown'})`);
  return new ServerError('the authorization server is unavailable');
}

/** The token verifier the MCP SDK's requireBearerAuth takes. */
export function createVerifier(o: VerifierOptions): OAuthTokenVerifier {
  async function verifyJwt(token: string): Promise<AuthInfo> {
    let payload: JWTPayload;
    try {
      const header = decodeProtectedHeader(token);
      if (typeof header.kid !== 'string' || !header.kid) throw new InvalidTokenError('token has no kid');
      ({ payload } = await jwtVerify(token, await o.issuer.keys(), {
        issuer: o.issuer.url,
        audience: o.audience(),
        algorithms: [...ACCEPTED_ALGORITHMS],
        clockTolerance: LEEWAY_SECONDS,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (error) {
      throw error instanceof InvalidTokenError ? error : refusal(error, o.onUnavailable);
    }
    const subject = stringClaim(payload.sub);
    if (!subject) throw new InvalidTokenError('token sub not accepted');
    const identity: TokenIdentity = { issuer: o.issuer.url, subject, jti: stringClaim(payload.jti) };
    return {
      token,
      clientId: stringClaim(payload.client_id) ?? stringClaim(payload.azp) ?? '',
      scopes: scopesOf(payload),
      // The SDK's middleware refuses a token past expiresAt; jose already allowed the same leeway.
      expiresAt: (payload.exp ?? 0) + LEEWAY_SECONDS,
      resource: new URL(o.audience()),
      extra: { identity },
    };
  }

  async function introspect(token: string): Promise<AuthInfo> {
    if (!o.introspection)
      throw new InvalidTokenError('token is not a JWT and leash has no introspection configured');
    let answer;
    try {
      const endpoint = await o.issuer.introspectionEndpoint();
      if (!endpoint)
        throw new InvalidTokenError('token is not a JWT and the issuer has no introspection endpoint');
      const basic = Buffer.from(
        `${encodeURIComponent(o.introspection.clientId)}:${encodeURIComponent(o.introspection.clientSecret)}`,
      ).toString('base64');
      answer = introspectionSchema.safeParse(
        await o.issuer.postForm(endpoint, new URLSearchParams({ token, token_type_hint: 'access_token' }), {
          authorization: `Basic ${basic}`,
        }),
      );
    } catch (error) {
      throw error instanceof InvalidTokenError ? error : refusal(error, o.onUnavailable);
    }
    if (!answer.success) throw new ServerError('the introspection answer is not valid');
    const t = answer.data;
    const now = Date.now() / 1000;
    if (!t.active) throw new InvalidTokenError('token is not active');
    if (t.iss !== undefined && t.iss !== o.issuer.url) throw new InvalidTokenError('token iss not accepted');
    const audiences = typeof t.aud === 'string' ? [t.aud] : (t.aud ?? []);
    if (!audiences.includes(o.audience()))
      throw new InvalidTokenError('token was not issued for this resource (aud)');
    if (t.exp === undefined || t.exp + LEEWAY_SECONDS <= now) throw new InvalidTokenError('token expired');
    if (t.nbf !== undefined && t.nbf - LEEWAY_SECONDS > now)
      throw new InvalidTokenError('token nbf not accepted');
    // A client-credentials token acts for its client: with no sub, the client is the subject (as RFC 9068 has it).
    const subject = t.sub ?? t.client_id;
    if (!subject) throw new InvalidTokenError('token sub not accepted');
    const identity: TokenIdentity = { issuer: o.issuer.url, subject, jti: t.jti ?? null };
    return {
      token,
      clientId: t.client_id ?? '',
      scopes: scopesOf(t),
      expiresAt: t.exp + LEEWAY_SECONDS,
      resource: new URL(o.audience()),
      extra: { identity },
    };
  }

  return {
    async verifyAccessToken(token) {
      if (token.length > MAX_TOKEN_CHARS)
        throw new InvalidTokenError(`token longer than ${MAX_TOKEN_CHARS} characters`);
      // A JWS in compact form is three base64url parts; anything else is opaque.
      return /^[\w-]+\.[\w-]*\.[\w-]*$/.test(token) ? verifyJwt(token) : introspect(token);
    },
  };
}
