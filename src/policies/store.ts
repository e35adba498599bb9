import { sql } from 'kysely';
import { recordAction, SYSTEM_ACTOR, actorName, type Actor } from '../audit/operator-actions.js';
import { durableCommit, type Db } from '../db/database.js';
import { compilePolicy, policyDigest, PolicyFileError, type CompiledPolicy } from '../policy/compile.js';
import { policyFileSchema, type PolicyFile } from '../policy/schema.js';

export interface AppliedPolicy {
  name: string;
  version: number;
  created: boolean;
  digest: string;
}

/**
 * Stores a validated policy; a changed document becomes a new version, an unchanged one is a no-op. A new version
 * records `by` (`applied_by`, and an operator action) in the same transaction.
 */
export async function applyPolicy(db: Db, doc: PolicyFile, by: Actor = SYSTEM_ACTOR): Promise<AppliedPolicy> {
  const digest = policyDigest(doc);
  const compiled = compilePolicy(doc, 0);
  return db.transaction().execute(async (trx) => {
    await durableCommit(trx);
    // Serialise applies of one policy name so versions are dense and never collide.
    await sql`select pg_advisory_xact_lock(hashtext(${'policy:' + doc.name}))`.execute(trx);
    const current = await trx
      .selectFrom('policies')
      .innerJoin('policy_versions as v', (j) =>
        j.onRef('v.policy', '=', 'policies.name').onRef('v.version', '=', 'policies.latest_version'),
      )
      .select(['policies.latest_version', 'v.digest'])
      .where('policies.name', '=', doc.name)
      .executeTakeFirst();
    if (current && current.digest === digest) {
      return { name: doc.name, version: current.latest_version, created: false, digest };
    }
    const version = (current?.latest_version ?? 0) + 1;
    if (current) {
      await trx
        .updateTable('policies')
        .set({ latest_version: version, updated_at: sql<Date>`now()` })
        .where('name', '=', doc.name)
        .execute();
    } else {
      await trx.insertInto('policies').values({ name: doc.name, latest_version: version }).execute();
    }
    await trx
      .insertInto('policy_versions')
      .values({
        policy: doc.name,
        version,
        document: JSON.stringify(doc),
        digest,
        loop_limit: compiled.loopGuard?.identicalCalls ?? null,
        loop_window_seconds: compiled.loopGuard?.windowSeconds ?? null,
        applied_by: actorName(by),
      })
      .execute();
    await recordAction(trx, by, 'policy.apply', `policy:${doc.name}`, { version, digest });
    return { name: doc.name, version, created: true, digest };
  });
}

const cache = new Map<string, CompiledPolicy>();

/** Compiles a stored version once per process; versions are immutable, so the cache never goes stale. */
export function compiledFromStored(name: string, version: number, document: unknown): CompiledPolicy {
  const key = `${name}@${version}`;
  let compiled = cache.get(key);
  if (!compiled) {
    const parsed = policyFileSchema.safeParse(document);
    if (!parsed.success) throw new PolicyFileError(`stored policy ${key} no longer validates`);
    compiled = compilePolicy(parsed.data, version);
    cache.set(key, compiled);
  }
  return compiled;
}

/** The latest (or a given) version of a stored policy, or undefined. */
export async function loadPolicy(
  db: Db,
  name: string,
  version?: number,
): Promise<CompiledPolicy | undefined> {
  const row = await db
    .selectFrom('policy_versions as v')
    .innerJoin('policies as p', 'p.name', 'v.policy')
    .select(['v.policy', 'v.version', 'v.document'])
    .where('v.policy', '=', name)
    .where((eb) =>
      version === undefined
        ? eb('v.version', '=', eb.ref('p.latest_version'))
        : eb('v.version', '=', version),
    )
    .executeTakeFirst();
  return row ? compiledFromStored(row.policy, row.version, row.document) : undefined;
}

export interface PolicySummary {
  name: string;
  latest_version: number;
  updated_at: Date;
  /** Who applied the latest version (null for versions applied before leash recorded it). */
  applied_by: string | null;
  tools: string[];
  active_keys: number;
}

export async function listPolicies(db: Db): Promise<PolicySummary[]> {
  const rows = await db
    .selectFrom('policies as p')
    .innerJoin('policy_versions as v', (j) =>
      j.onRef('v.policy', '=', 'p.name').onRef('v.version', '=', 'p.latest_version'),
    )
    .select((eb) => [
      'p.name',
      'p.latest_version',
      'p.updated_at',
      'v.applied_by',
      'v.document',
      eb
        .selectFrom('vault_keys as k')
        .select(sql<number>`count(*)::int`.as('n'))
        .whereRef('k.policy', '=', 'p.name')
        .where('k.revoked_at', 'is', null)
        .where((w) => w.or([w('k.expires_at', 'is', null), w('k.expires_at', '>', sql<Date>`now()`)]))
        .as('active_keys'),
    ])
    .orderBy('p.name')
    .execute();
  return rows.map((r) => ({
    name: r.name,
    latest_version: r.latest_version,
    updated_at: r.updated_at,
    applied_by: r.applied_by,
    tools: Object.keys((r.document as { tools?: Record<string, unknown> }).tools ?? {}),
    active_keys: r.active_keys ?? 0,
  }));
}

/** The stored document of a version (latest when omitted). */
export async function policyDocument(
  db: Db,
  name: string,
  version?: number,
): Promise<{ version: number; document: PolicyFile } | undefined> {
  const compiled = await loadPolicy(db, name, version);
  return compiled ? { version: compiled.version, document: compiled.document } : undefined;
}
