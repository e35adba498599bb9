import { createHash } from 'node:crypto';
import type { Db } from '../db/database.js';
import { authenticate, type AuthResult } from './authenticate.js';

const MAX_ENTRIES = 10_000;
const TTL_MS = 60_000;

/**
 * Authenticated keys by the hash of the presented key, so a steady agent costs no lookup before admission.
 * Safe because nothing here is trusted for a decision that matters: admission and denial statements re-check
 * the secret, revoke, expiry and policy version in SQL, and a stale entry is dropped when they disagree.
 */
export class KeyCache {
  private readonly entries = new Map<string, { result: AuthResult & { ok: true }; at: number }>();
  constructor(private readonly db: Db) {}

  /** The key for a presented vault key: from the cache, or one query (which refreshes the cache). */
  async identify(presented: string | undefined, fresh = false): Promise<AuthResult> {
    if (!presented) return { ok: false, keyId: null };
    const id = cacheId(presented);
    const hit = this.entries.get(id);
    if (!fresh && hit && Date.now() - hit.at < TTL_MS) return hit.result;
    const result = await authenticate(this.db, presented);
    if (result.ok) {
      this.entries.delete(id);
      if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value ?? '');
      this.entries.set(id, { result, at: Date.now() });
    } else this.entries.delete(id);
    return result;
  }

  /** Forgets a presented key (SQL said the cached answer is stale). */
  forget(presented: string): void {
    this.entries.delete(cacheId(presented));
  }
}

// Keyed by a hash of the whole presented key: a wrong secret never matches a cached right one.
const cacheId = (presented: string) => createHash('sha256').update(presented).digest('base64url');
