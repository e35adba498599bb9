import { createHmac } from 'node:crypto';

/**
 * The key of "unkeyed" mode (no LEASH_AUDIT_KEY and no master key). It is public, so hashes made with it can be
 * brute-forced as plain sha-256 could: set LEASH_AUDIT_KEY (or a master key) to make them unguessable.
 */
export const UNKEYED_AUDIT_KEY = 'leash unkeyed audit hmac v1';

/** Hashes what the audit log keeps of agent arguments: HMAC-SHA256 under the server's audit key, as hex. */
export interface AuditHasher {
  hash(text: string): string;
  /** False in unkeyed mode (the public key above). */
  readonly keyed: boolean;
}

/**
 * The one hash of agent-controlled text the audit log stores (argument digests, SMS body hashes, sensitive
 * fields). Keyed like HashiCorp Vault's audit HMACs, so someone reading the audit table cannot brute-force a short
 * secret (a one-time code) from its hash. Every replica must hold the same key for digests to agree.
 */
export function auditHasher(key: Uint8Array | undefined): AuditHasher {
  const k = key ?? Buffer.from(UNKEYED_AUDIT_KEY, 'utf8');
  return Object.freeze({
    keyed: key !== undefined,
    hash: (text: string) => createHmac('sha256', k).update(text, 'utf8').digest('hex'),
  });
}

/** The warning `leash serve` / `leash mcp` print (one stderr line) at start when no audit key is configured. */
export const UNKEYED_WARNING =
  'no audit key: argument hashes in the audit log (SMS body hashes included) can be brute-forced; ' +
  'set LEASH_AUDIT_KEY (32+ random bytes, hex or base64) or a master key (LEASH_MASTER_KEY or `leash init`)';
