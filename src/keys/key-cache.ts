import { createHash, randomBytes } from 'node:crypto';
import type { Db } from '../db/database.js';
import { authenticate, authenticateBinding, type AuthResult } from './authenticate.js';
import type { OAuthIdentity } from './vault-keys.js';

const MAX_ENTRIES = 10_000;
const TTL_MS = 60_000;
/** Callers registered at once (requests in flight with an OAuth token); beyond it a door refuses with 503. */
const MAX_CALLERS = 10_000;

type Entry = { result: AuthResult; at: number };

/**
 * An OAuth caller as a door verified it: the binding's identity, and what the audit row keeps of the token (its
 * `sub`, `client_id` and `jti`, never the token).
 */
export interface OAuthCaller {
  identity: OAuthIdentity;
  claims: { sub: string; client_id: string | null; jti: string | null };
}

/** What a caller handle starts with: never a vault key's shape, and 256 random bits after it. */
const HANDLE_PREFIX = 'oauth-caller:';

/**
 * Authenticated keys by the hash of the presented key, so a steady agent costs no lookup before admission.
 * Safe because nothing here is trusted for a decision that matters: admission and denial statements re-check
 * the secret, revoke, expiry and policy version in SQL, and a stale entry is dropped when they disagree.
 * Wrong keys are remembered too (a key's id and secret are random, so a wrong one never becomes right): a
 * client repeating one bad key costs the database nothing.
 *
 * OAuth callers: a door that verified an access token registers its caller for the request and presents the
 * returned handle as the key; the handle names the caller's binding (looked up and cached by identity, re-checked
 * in SQL by the binding's id like any key) for as long as the request lasts. A handle is random and lives in this
 * process only, so no one can present one (stdio and the REST door included).
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();
  private readonly misses = new Map<string, Entry>();
  private readonly callers = new Map<string, OAuthCaller>();
  /** Database lookups made (for tests and the auth throttle's bound on them). */
  lookups = 0;
  constructor(private readonly db: Db) {}

  /** The key for a presented vault key (or caller handle): from the cache, or one query (which refreshes it). */
  async identify(presented: string | undefined, fresh = false): Promise<AuthResult> {
    if (!presented) return { ok: false, keyId: null };
    const caller = this.callers.get(presented);
    if (caller) return this.identifyBinding(caller.identity, fresh);
    if (presented.startsWith(HANDLE_PREFIX)) return { ok: false, keyId: null }; // a released (or made-up) handle
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

  /**
   * The binding of a verified token's identity. Only a usable binding is served from the cache: a missing, revoked
   * or expired one is looked up again (an operator may have just made a new one), so a refusal costs one query.
   */
  async identifyBinding(identity: OAuthIdentity, fresh = false): Promise<AuthResult> {
    const id = bindingId(identity);
    const hit = fresh ? undefined : this.hit(id);
    if (hit?.ok && !hit.key.revoked_at && !(hit.key.expires_at && hit.key.expires_at.getTime() <= Date.now()))
      return hit;
    this.lookups++;
    const result = await authenticateBinding(this.db, identity);
    this.remember(this.entries, id, result);
    return result;
  }

  /**
   * Registers a verified OAuth caller for one request and returns the handle to present as its key; undefined when
   * too many are in flight. Release it when the request ends.
   */
  register(caller: OAuthCaller): string | undefined {
    if (this.callers.size >= MAX_CALLERS) return undefined;
    const handle = `${HANDLE_PREFIX}${randomBytes(32).toString('base64url')}`;
    this.callers.set(handle, caller);
    return handle;
  }

  release(handle: string): void {
    this.callers.delete(handle);
  }

  /** What the audit row of a call keeps about its caller: an OAuth caller's `sub`, `client_id` and `jti`; else nothing. */
  callerMetadata(presented: string | undefined): Record<string, unknown> {
    const caller = presented === undefined ? undefined : this.callers.get(presented);
    return caller ? { oauth: { ...caller.claims, issuer: caller.identity.issuer } } : {};
  }

  /** The cached answer for a presented key, right or wrong, without a query; undefined when none is fresh. */
  peek(presented: string): AuthResult | undefined {
    return this.hit(this.idOf(presented));
  }

  /** Forgets a presented key (SQL said the cached answer is stale). */
  forget(presented: string): void {
    const id = this.idOf(presented);
    this.entries.delete(id);
    this.misses.delete(id);
  }

  private idOf(presented: string): string {
    const caller = this.callers.get(presented);
    return caller ? bindingId(caller.identity) : cacheId(presented);
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
// A binding is cached by its identity, apart from every vault key (a hash never starts with `binding:`).
const bindingId = (who: OAuthIdentity) => `binding:${JSON.stringify([who.issuer, who.subject, who.client])}`;
