import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { compiledFromStored } from '../policies/store.js';
import type { CompiledPolicy } from '../policy/compile.js';
import { parseVaultKey, secretMatches, type OAuthIdentity } from './vault-keys.js';

export interface AuthenticatedKey {
  id: string;
  agent: string;
  run_id: string | null;
  policy: CompiledPolicy;
  expires_at: Date | null;
  revoked_at: Date | null;
  /**
   * sha-256 of the presented secret, hex: admission re-checks it against the row in the same statement. For an OAuth
   * binding (no secret is presented) it is the row's own hash, so admission still re-checks the row by id.
   */
  secret_hash: string;
}

export type AuthResult = { ok: true; key: AuthenticatedKey } | { ok: false; keyId: string | null };

interface Row {
  id: string;
  secret_hash: Buffer;
  agent: string;
  run_id: string | null;
  policy: string;
  version: number;
  document: unknown;
  expires_at: Date | null;
  revoked_at: Date | null;
}

const keyOf = (row: Row): AuthenticatedKey => ({
  id: row.id,
  agent: row.agent,
  run_id: row.run_id,
  policy: compiledFromStored(row.policy, row.version, row.document),
  expires_at: row.expires_at,
  revoked_at: row.revoked_at,
  secret_hash: row.secret_hash.toString('hex'),
});

/**
 * One query: the key and its policy version (pinned or latest). The answer may be cached by the caller:
 * admission and denial statements re-check secret, revoke, expiry and policy version in SQL, so a cached
 * answer never admits a call a revoke has stopped. An OAuth binding's row is never a vault key's.
 */
export async function authenticate(db: Db, presented: string | undefined): Promise<AuthResult> {
  const parsed = presented ? parseVaultKey(presented) : undefined;
  if (!parsed) return { ok: false, keyId: null };
  const { rows } = await sql<Row>`
    select k.id, k.secret_hash, k.agent, k.run_id, k.policy, v.version, v.document, k.expires_at, k.revoked_at
    from vault_keys k
    join policies p on p.name = k.policy
    join policy_versions v on v.policy = k.policy and v.version = coalesce(k.policy_version, p.latest_version)
    where k.id = ${parsed.id} and k.oauth_subject is null`.execute(db);
  const row = rows[0];
  if (!row || !secretMatches(parsed.secret, row.secret_hash))
    return { ok: false, keyId: row ? parsed.id : null };
  return { ok: true, key: keyOf(row) };
}

/**
 * The binding of a verified access token's identity, in one query: the active binding made for its client when
 * there is one, else the one for any client of its subject; else the newest revoked one (so the caller hears
 * key_revoked, not key_invalid). `keyId` null: no binding was ever made for this identity.
 */
export async function authenticateBinding(db: Db, who: OAuthIdentity): Promise<AuthResult> {
  const { rows } = await sql<Row>`
    select k.id, k.secret_hash, k.agent, k.run_id, k.policy, v.version, v.document, k.expires_at, k.revoked_at
    from vault_keys k
    join policies p on p.name = k.policy
    join policy_versions v on v.policy = k.policy and v.version = coalesce(k.policy_version, p.latest_version)
    where k.oauth_issuer = ${who.issuer} and k.oauth_subject = ${who.subject}
      and (k.oauth_client is null or k.oauth_client = ${who.client})
    order by k.revoked_at is null desc, k.oauth_client is null, k.revoked_at desc
    limit 1`.execute(db);
  const row = rows[0];
  return row ? { ok: true, key: keyOf(row) } : { ok: false, keyId: null };
}
