import { hkdfSync } from 'node:crypto';
import { join } from 'node:path';

/** What the text of a 32-byte key (LEASH_MASTER_KEY, the master key file) must be, as errors say it. */
export const KEY_TEXT_RULE = 'must be 32 bytes (64 hex characters or base64)';

/** A 32-byte key written as 64 hex characters or base64; undefined when it is not 32 bytes. */
export function keyBytes(text: string): Buffer | undefined {
  const t = text.trim();
  const key = /^[0-9a-f]{64}$/i.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64');
  return key.length === 32 ? key : undefined;
}

/** Where `leash init` keeps the master key when LEASH_MASTER_KEY is not set. */
export function masterKeyPath(config: { readonly home: string }): string {
  return join(config.home, 'master.key');
}

/** HKDF info for the audit key derived from the master key. */
export const AUDIT_KEY_INFO = 'leash audit hmac v1';

/** The audit key derived from the 32-byte master key (HKDF-SHA256, no salt, info `leash audit hmac v1`). */
export function deriveAuditKey(masterKey: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), AUDIT_KEY_INFO, 32));
}
