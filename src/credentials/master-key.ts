import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import type { Config } from '../config/config.js';
import { KEY_TEXT_RULE, keyBytes, masterKeyPath } from '../config/server-keys.js';

/** A vendor credential problem: missing secret, bad master key. Messages never contain a secret. */
export class CredentialError extends Error {
  override name = 'CredentialError';
}

/** A 32-byte key written as 64 hex characters or base64. Throws CredentialError (naming `where`, never the key). */
export function decodeKey(text: string, where: string): Buffer {
  const key = keyBytes(text);
  if (!key) throw new CredentialError(`${where} ${KEY_TEXT_RULE}`);
  return key;
}

/** The AES-256 master key: LEASH_MASTER_KEY, or the 0600 file in LEASH_HOME (created when `create` is set). */
export async function loadMasterKey(config: Config, create = false): Promise<Buffer> {
  if (config.masterKey) return decodeKey(config.masterKey, 'LEASH_MASTER_KEY');
  const path = masterKeyPath(config);
  try {
    return decodeKey(await readFile(path, 'utf8'), path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    if (!create) {
      throw new CredentialError(`no master key: set LEASH_MASTER_KEY or run 'leash init' to create ${path}`);
    }
  }
  await mkdir(config.home, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  try {
    await writeFile(path, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (error) {
    // Another process created it first; use theirs.
    if ((error as NodeJS.ErrnoException).code === 'EEXIST')
      return decodeKey(await readFile(path, 'utf8'), path);
    throw error;
  }
  await chmod(path, 0o600);
  return key;
}

/** AES-256-GCM: nonce(12) | tag(16) | ciphertext. The vendor/name pair is bound as associated data. */
export function seal(key: Buffer, plaintext: string, aad: string): Buffer {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(aad));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([nonce, cipher.getAuthTag(), body]);
}

export function open(key: Buffer, sealed: Buffer, aad: string): string {
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(sealed.subarray(12, 28));
    return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString('utf8');
  } catch {
    throw new CredentialError(
      `cannot decrypt the stored credential ${aad}: wrong master key or tampered data`,
    );
  }
}
