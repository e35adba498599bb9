// The operator's authorization server as leash reads it: its metadata (RFC 8414, or OpenID discovery), discovered
// once and cached, and the two things leash uses from it: the JWKS that signs access tokens, and the introspection
// endpoint (RFC 7662) for opaque ones. leash issues no tokens: it only checks them.
import { buildDiscoveryUrls } from '@modelcontextprotocol/sdk/client/auth.js';
import { createRemoteJWKSet, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';

/** How long a fetch of the issuer's metadata, keys or introspection may take. */
const TIMEOUT_MS = 5_000;
/** Metadata is read again after this long (a changed jwks_uri is picked up without a restart). */
const METADATA_MAX_AGE_MS = 3_600_000;
/** After a failed discovery, the next request tries again no sooner than this. */
const RETRY_AFTER_MS = 5_000;
/** The largest answer read from the issuer (metadata, introspection). */
const MAX_ANSWER_BYTES = 256 * 1024;

/** The issuer could not be reached or answered something unusable; the message names what, never a token. */
export class IssuerUnavailable extends Error {
  override name = 'IssuerUnavailable';
}

const metadataSchema = z.looseObject({
  issuer: z.string(),
  jwks_uri: z.url({ protocol: /^https?$/ }).optional(),
  introspection_endpoint: z.url({ protocol: /^https?$/ }).optional(),
});
type IssuerMetadata = z.infer<typeof metadataSchema>;

export interface IssuerOptions {
  /** Seconds jose waits before fetching the JWKS again for an unknown `kid` (default jose's 30 s; tests pass 0). */
  jwksCooldownMs?: number;
  fetch?: typeof fetch;
}

export interface Issuer {
  readonly url: string;
  /** The issuer's signing keys (fetched again when a token names a `kid` they lack: key rotation). */
  keys(): Promise<JWTVerifyGetKey>;
  /** The introspection endpoint, if the issuer has one. */
  introspectionEndpoint(): Promise<string | undefined>;
  /** POSTs a form to the issuer (introspection) and reads its JSON answer, bounded in size and time. */
  postForm(endpoint: string, form: URLSearchParams, headers: Record<string, string>): Promise<unknown>;
}

async function readJson(res: Response, what: string): Promise<unknown> {
  const length = Number(res.headers.get('content-length') ?? 0);
  if (length > MAX_ANSWER_BYTES) throw new IssuerUnavailable(`${what}: answer too large`);
  const text = await res.text();
  if (text.length > MAX_ANSWER_BYTES) throw new IssuerUnavailable(`${what}: answer too large`);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new IssuerUnavailable(`${what}: answer is not JSON`);
  }
}

/** The issuer `url` (LEASH_OAUTH_ISSUER), read lazily: nothing is fetched until the first token arrives. */
export function createIssuer(url: string, o: IssuerOptions = {}): Issuer {
  const fetchFn = o.fetch ?? fetch;
  let metadata: { value: Promise<IssuerMetadata>; at: number } | undefined;
  let jwks: { uri: string; set: JWTVerifyGetKey } | undefined;

  async function discover(): Promise<IssuerMetadata> {
    // RFC 8414 first, then OpenID discovery, with the path-insertion rules the MCP SDK's client uses.
    for (const { url: where } of buildDiscoveryUrls(url)) {
      let res: Response;
      try {
        res = await fetchFn(where, {
          headers: { accept: 'application/json' },
          signal: AbortSignal.timeout(TIMEOUT_MS),
        });
      } catch {
        throw new IssuerUnavailable(`could not reach the authorization server's metadata at ${where.href}`);
      }
      if (res.status >= 400 && res.status < 500) {
        await res.body?.cancel();
        continue;
      }
      if (!res.ok) throw new IssuerUnavailable(`authorization server metadata: HTTP ${res.status}`);
      const parsed = metadataSchema.safeParse(await readJson(res, 'authorization server metadata'));
      if (!parsed.success) throw new IssuerUnavailable('authorization server metadata is not valid');
      // RFC 8414 §3.3: the issuer in the document must be exactly the one asked for.
      if (parsed.data.issuer !== url)
        throw new IssuerUnavailable(`authorization server metadata names another issuer than ${url}`);
      return parsed.data;
    }
    throw new IssuerUnavailable(`no authorization server metadata found for ${url}`);
  }

  function current(): Promise<IssuerMetadata> {
    const now = Date.now();
    if (!metadata || now - metadata.at > METADATA_MAX_AGE_MS) {
      const value = discover();
      const entry = { value, at: now };
      metadata = entry;
      // A failure is kept briefly (each request does not refetch), then forgotten so the next one tries again.
      value.catch(() => {
        entry.at = now - METADATA_MAX_AGE_MS + RETRY_AFTER_MS;
      });
    }
    return metadata.value;
  }

  return {
    url,
    async keys() {
      const m = await current();
      if (!m.jwks_uri) throw new IssuerUnavailable('the authorization server publishes no jwks_uri');
      if (jwks?.uri !== m.jwks_uri) {
        jwks = {
          uri: m.jwks_uri,
          set: createRemoteJWKSet(new URL(m.jwks_uri), {
            timeoutDuration: TIMEOUT_MS,
            cooldownDuration: o.jwksCooldownMs ?? 30_000,
            cacheMaxAge: 600_000,
          }),
        };
      }
      return jwks.set;
    },
    async introspectionEndpoint() {
      return (await current()).introspection_endpoint;
    },
    async postForm(endpoint, form, headers) {
      let res: Response;
      try {
        res = await fetchFn(endpoint, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            accept: 'application/json',
            ...headers,
          },
          body: form.toString(),
          signal: AbortSignal.timeout(TIMEOUT_MS),
        });
      } catch {
        throw new IssuerUnavailable('could not reach the introspection endpoint');
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new IssuerUnavailable(`introspection endpoint: HTTP ${res.status}`);
      }
      return readJson(res, 'introspection');
    },
  };
}
