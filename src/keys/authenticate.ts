import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import { compiledFromStored } from '../policy/store.js';
import type { CompiledPolicy } from '../policy/compile.js';
import { parseVaultKey, secretMatches } from './vault-keys.js';

export interface AuthenticatedKey {
  id: string;
  agent: string;
  run_id: string | null;
  policy: CompiledPolicy;
  expires_at: Date | null;
  revoked_at: Date | null;
  /** Allowed calls by this key with the same arguments inside the policy's loop-guard window. */
  recentIdenticalCalls: number;
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
  recent: number;
}

/**
 * One query: the key, its policy version (pinned or latest) and the loop-guard count for these arguments.
 * Nothing is cached, so a revoke is seen by the very next call. Unknown or wrong secret → not ok.
 */
export async function authenticate(
  db: Db,
  presented: string | undefined,
  argsHash: string | null,
): Promise<AuthResult> {
  const parsed = presented ? parseVaultKey(presented) : undefined;
  if (!parsed) return { ok: false, keyId: null };
  const { rows } = await sql<Row>`
    select k.id, k.secret_hash, k.agent, k.run_id, k.policy, v.version, v.document, k.expires_at, k.revoked_at,
      case when v.loop_limit is null or ${argsHash}::text is null then 0 else (
        select count(*)::int from audit_log a
        where a.key_id = k.id and a.args_hash = ${argsHash}::text and a.decision = 'allowed'
          and a.ts > now() - make_interval(secs => v.loop_window_seconds)
      ) end as recent
    from vault_keys k
    join policies p on p.name = k.policy
    join policy_versions v on v.policy = k.policy and v.version = coalesce(k.policy_version, p.latest_version)
    where k.id = ${parsed.id}`.execute(db);
  const row = rows[0];
  if (!row || !secretMatches(parsed.secret, row.secret_hash))
    return { ok: false, keyId: row ? parsed.id : null };
  return {
    ok: true,
    key: {
      id: row.id,
      agent: row.agent,
      run_id: row.run_id,
      policy: compiledFromStored(row.policy, row.version, row.document),
      expires_at: row.expires_at,
      revoked_at: row.revoked_at,
      recentIdenticalCalls: row.recent,
    },
  };
}
