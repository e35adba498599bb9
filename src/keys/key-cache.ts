import { createHash } from 'node:crypto';
import type { Db } from '../db/database.js';
import { authenticate, type AuthResult } from './authenticate.js';

const MAX_ENTRIES = 10_000;
const TTL_MS = 60_000;

type Entry = { result: AuthResult; at: number };

/**
 * Authenticated keys by the hash of the presented key, so a steady agent costs no lookup before admission.
 * Safe because nothing here is trusted for a decision that matters: admission and denial statements re-check
 * the secret, revoke, expiry and policy version in SQL, and a stale entry is dropped when they disagree.
 * Wrong keys are remembered too (a key's id and secret are random, so a wrong one never becomes right): a
 * client repeating one bad key costs the database nothing.
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();
  private readonly misses = new Map<string, Entry>();
  /** Database lookups made (for tests and the auth throttle's bound on them). */
  lookups = 0;
  constructor(private readonly db: Db) {}

  /** The key for a presented vault key: from the cache, or one query (which refreshes the cache). */
  async identify(presented: string | undefined, fresh = false): Promise<AuthResult> {
    if (!presented) return { ok: false, keyId: null };
    const id = cacheId(presented);
    if (!fresh) {
      const hit = this.hit(id);
      if (hit) return hit;
    }
    this.lookups++;
    const result = await authenticate(this.db, presented);
    this.remember(result.ok ? this.entries : this.misses, id, result);
    (result.ok ? this.misses : this.entries).delete(id);
    return result;
  }

  /** The cached answer for a presented key, right or wrong, without a query; undefined when none is fresh. */
  peek(presented: string): AuthResult | undefined {
    return this.hit(cacheId(presented));
  }

  /** Forgets a presented key (SQL said the cached answer is stale). */
  forget(presented: string): void {
    const id = cacheId(presented);
    this.entries.delete(id);
    this.misses.delete(id);
  }

  private hit(id: string): AuthResult | undefined {
    const entry = this.entries.get(id) ?? this.misses.get(id);
    return entry && Date.now() - entry.at < TTL_MS ? entry.result : undefined;
  }

  private remember(map: Map<string, Entry>, id: string, result: AuthResult) {
    map.delete(id);
    if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value ?? '');
    map.set(id, { result, at: Date.now() });
  }
}

// Keyed by a hash of the whole presented key: a wrong secret never matches a cached right one.
const cacheId = (presented: string) => createHash('sha256').update(presented).digest('base64url');
