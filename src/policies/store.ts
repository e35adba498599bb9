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
  /** The version was installed as the policy's shadow (`--shadow`): decided beside the enforced one, deciding nothing. */
  shadow: boolean;
}

/** Thrown for an apply or promote the stored state does not allow (a shadow of a policy that does not exist yet). */
export class PolicyStateError extends Error {}

/**
 * Stores a validated policy; a changed document becomes a new version, an unchanged one is a no-op. A new version
 * records `by` (`applied_by`, and an operator action) in the same transaction.
 * With `shadow`, the version becomes the policy's shadow instead of its latest: every call is decided by it too, and
 * the audit row says how, but keys keep the enforced version until `promoteShadow`. A document equal to the enforced
 * version is refused (there is nothing to compare), one equal to the current shadow is a no-op.
 */
export async function applyPolicy(
  db: Db,
  doc: PolicyFile,
  by: Actor = SYSTEM_ACTOR,
  o: { shadow?: boolean } = {},
): Promise<AppliedPolicy> {
  const digest = policyDigest(doc);
  const compiled = compilePolicy(doc, 0);
  const shadow = o.shadow === true;
  return db.transaction().execute(async (trx) => {
    await durableCommit(trx);
    // Serialise applies of one policy name so versions are dense and never collide.
    await sql`select pg_advisory_xact_lock(hashtext(${'policy:' + doc.name}))`.execute(trx);
    const current = await trx
      .selectFrom('policies')
      .innerJoin('policy_versions as v', (j) =>
        j.onRef('v.policy', '=', 'policies.name').onRef('v.version', '=', 'policies.latest_version'),
      )
      .select(['policies.latest_version', 'policies.shadow_version', 'v.digest'])
      .select((eb) =>
        eb
          .selectFrom('policy_versions as s')
          .select('s.digest')
          .whereRef('s.policy', '=', 'policies.name')
          .whereRef('s.version', '=', 'policies.shadow_version')
          .as('shadow_digest'),
      )
      .select((eb) =>
        eb
          .selectFrom('policy_versions as m')
          .select((m) => m.fn.max('m.version').as('n'))
          .whereRef('m.policy', '=', 'policies.name')
          .as('max_version'),
      )
      .where('policies.name', '=', doc.name)
      .executeTakeFirst();
    if (shadow) {
      if (!current)
        throw new PolicyStateError(
          `policy '${doc.name}' does not exist yet: apply it without --shadow first (a shadow is compared with an enforced version)`,
        );
      if (current.digest === digest)
        throw new PolicyStateError(
          `this document is policy '${doc.name}' version ${current.latest_version}, the one enforced: a shadow must differ`,
        );
      if (current.shadow_digest === digest && current.shadow_version !== null)
        return { name: doc.name, version: current.shadow_version, created: false, digest, shadow: true };
    } else if (current && current.digest === digest) {
      return { name: doc.name, version: current.latest_version, created: false, digest, shadow: false };
    }
    // Versions are dense across enforced and shadow versions alike.
    const version = (current?.max_version ?? 0) + 1;
    if (!current) {
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
    if (current) {
      await trx
        .updateTable('policies')
        .set(shadow ? { shadow_version: version } : { latest_version: version, updated_at: sql<Date>`now()` })
        .where('name', '=', doc.name)
        .execute();
    }
    await recordAction(trx, by, shadow ? 'policy.shadow' : 'policy.apply', `policy:${doc.name}`, {
      version,
      digest,
      ...(shadow ? { enforced: current?.latest_version } : {}),
    });
    return { name: doc.name, version, created: true, digest, shadow };
  });
}

export interface ShadowChange {
  name: string;
  /** The version enforced before, and after (promote: the shadow's; drop: unchanged). */
  from: number;
  to: number;
  /** The shadow version promoted or dropped. */
  shadow: number;
}

/**
 * Makes the policy's shadow version the enforced one (keys that follow the latest version move to it on their next
 * call, on every replica: admission re-checks the version), or, with `drop`, removes the shadow. Recorded as an
 * operator action in the same transaction. Undefined when the policy has no shadow (or does not exist).
 */
export async function changeShadow(
  db: Db,
  name: string,
  how: 'promote' | 'drop',
  by: Actor = SYSTEM_ACTOR,
): Promise<ShadowChange | undefined> {
  return db.transaction().execute(async (trx) => {
    await durableCommit(trx);
    await sql`select pg_advisory_xact_lock(hashtext(${'policy:' + name}))`.execute(trx);
    const row = await trx
      .selectFrom('policies')
      .select(['latest_version', 'shadow_version'])
      .where('name', '=', name)
      .forUpdate()
      .executeTakeFirst();
    if (!row || row.shadow_version === null) return undefined;
    const to = how === 'promote' ? row.shadow_version : row.latest_version;
    await trx
      .updateTable('policies')
      .set(
        how === 'promote'
          ? { latest_version: row.shadow_version, shadow_version: null, updated_at: sql<Date>`now()` }
          : { shadow_version: null },
      )
      .where('name', '=', name)
      .execute();
    await recordAction(trx, by, how === 'promote' ? 'policy.promote' : 'policy.unshadow', `policy:${name}`, {
      version: to,
      from: row.latest_version,
      shadow: row.shadow_version,
    });
    return { name, from: row.latest_version, to, shadow: row.shadow_version };
  });
}

/** Every policy's shadow version, compiled: what the pipeline decides each call by beside the enforced version. */
export async function loadShadows(db: Db): Promise<Map<string, CompiledPolicy>> {
  const rows = await db
    .selectFrom('policies as p')
    .innerJoin('policy_versions as v', (j) =>
      j.onRef('v.policy', '=', 'p.name').onRef('v.version', '=', 'p.shadow_version'),
    )
    .select(['v.policy', 'v.version', 'v.document'])
    .execute();
  return new Map(rows.map((r) => [r.policy, compiledFromStored(r.policy, r.version, r.document)]));
}

/** Compiled versions by `name@version`, with the stored document they were compiled from. */
const cache = new Map<string, { document: string; compiled: CompiledPolicy }>();

/**
 * Compiles a stored version once per process. Versions are immutable within a database, but one process may see
 * more than one database (the test suite, a restored copy), so a hit must also be the same document.
 */
export function compiledFromStored(name: string, version: number, document: unknown): CompiledPolicy {
  const key = `${name}@${version}`;
  const text = JSON.stringify(document);
  const hit = cache.get(key);
  if (hit?.document === text) return hit.compiled;
  const parsed = policyFileSchema.safeParse(document);
  if (!parsed.success) throw new PolicyFileError(`stored policy ${key} no longer validates`);
  const compiled = compilePolicy(parsed.data, version);
  cache.set(key, { document: text, compiled });
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
  /** The version decided beside it, deciding nothing (null: none). */
  shadow_version: number | null;
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
      'p.shadow_version',
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
    shadow_version: r.shadow_version,
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
