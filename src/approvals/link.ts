import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** The secret links are signed with: a dedicated one, else derived from the admin token; none → no links. */
export function linkKey(o: {
  linkSecret?: string | undefined;
  adminToken?: string | undefined;
}): Buffer | undefined {
  const base = o.linkSecret ?? o.adminToken;
  return base === undefined ? undefined : createHmac('sha256', 'leash approval links').update(base).digest();
}

/** sha-256 of a link nonce: all the database keeps of it. */
export function nonceHash(nonce: string): Buffer {
  return createHash('sha256').update(nonce).digest();
}

function mac(key: Buffer, id: string, nonce: string, expiresAt: Date): Buffer {
  return createHmac('sha256', key).update(`${id}\n${nonce}\n${expiresAt.toISOString()}`).digest();
}

/** A fresh one-time token for a request: `<nonce>.<HMAC over id, nonce, expiry>`, and the nonce's hash to store. */
export function mintLinkToken(key: Buffer, id: string, expiresAt: Date): { token: string; hash: Buffer } {
  const nonce = randomBytes(24).toString('base64url');
  return {
    token: `${nonce}.${mac(key, id, nonce, expiresAt).toString('base64url')}`,
    hash: nonceHash(nonce),
  };
}

/**
 * The nonce's hash when `token` was signed by this server for this request and expiry, else undefined (tampered,
 * another request's, or signed with another secret). Whether it is still unused is the database's to say.
 */
export function verifyLinkToken(key: Buffer, id: string, expiresAt: Date, token: string): Buffer | undefined {
  const m = /^([A-Za-z0-9_-]{32})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!m?.[1] || !m[2]) return undefined;
  const expected = mac(key, id, m[1], expiresAt);
  const given = Buffer.from(m[2], 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  return nonceHash(m[1]);
}

/** The page an approver opens: `<base>/approvals/<id>?t=<token>`. */
export function linkUrl(baseUrl: string, id: string, token: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/approvals/${id}?t=${encodeURIComponent(token)}`;
}
