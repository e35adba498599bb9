import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { sql } from 'kysely';
import { approvalsChanged } from '../approvals/changes.js';
import { cancelForKeys } from '../approvals/store.js';
import { actorName, recordAction, SYSTEM_ACTOR, type Actor } from '../audit/operator-actions.js';
import { durableCommit, type Db } from '../db/database.js';

/** A vault key problem an operator can act on (unknown policy, bad id). */
export class KeyError extends Error {
  override name = 'KeyError';
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const KEY_RE = /^lsk_([a-z2-7]{12})_([a-z2-7]{52})$/;

function base32(bytes: Buffer, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[(bytes[i] ?? 0) & 31];
  return out;
}

/** sha-256 of the secret: secrets carry 260 random bits, so a slow KDF adds nothing but latency. */
export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Splits `lsk_<id>_<secret>`; undefined when the shape is wrong. */
export function parseVaultKey(key: string): { id: string; secret: string } | undefined {
  const m = KEY_RE.exec(key.trim());
  return m?.[1] && m[2] ? { id: m[1], secret: m[2] } : undefined;
}

/** Constant-time check of a presented secret against the stored hash. */
export function secretMatches(secret: string, storedHash: Buffer): boolean {
  const presented = hashSecret(secret);
  return presented.length === storedHash.length && timingSafeEqual(presented, storedHash);
}

export interface MintOptions {
  agent: string;
  policy: string;
  runId?: string | undefined;
  policyVersion?: number | undefined;
  expiresAt?: Date | undefined;
  label?: string | undefined;
  metadata?: Record<string, string> | undefined;
}

export interface MintedKey {
  id: string;
  /** The whole key; shown once, never stored. */
  key: string;
  agent: string;
  run_id: string | null;
  policy: string;
  policy_version: number | null;
  expires_at: Date | null;
}

const newId = () => base32(randomBytes(12), 12);
const newSecret = () => base32(randomBytes(52), 52);

/** Checks what a key or binding names (agent, run, policy and version) before a row is written. */
async function checkMint(db: Db, o: MintOptions): Promise<void> {
  if (!/^[\w.@:-]{1,128}$/.test(o.agent))
    throw new KeyError('agent must be 1-128 characters of letters, digits, _ . @ : -');
  if (o.runId !== undefined && !/^[\w.@:-]{1,128}$/.test(o.runId)) {
    throw new KeyError('run id must be 1-128 characters of letters, digits, _ . @ : -');
  }
  const policy = await db
    .selectFrom('policies')
    .select(['name', 'latest_version'])
    .where('name', '=', o.policy)
    .executeTakeFirst();
  if (!policy)
    throw new KeyError(`no policy named '${o.policy}'; apply it first with 'leash policies apply <file>'`);
  if (o.policyVersion !== undefined && (o.policyVersion < 1 || o.policyVersion > policy.latest_version)) {
    throw new KeyError(
      `policy '${o.policy}' has no version ${o.policyVersion} (latest is ${policy.latest_version})`,
    );
  }
}

/** Mints a vault key; only the hash of its secret is stored. */
export async function mintKey(db: Db, o: MintOptions): Promise<MintedKey> {
  await checkMint(db, o);
  const id = newId();
  const secret = newSecret();
  await db
    .insertInto('vault_keys')
    .values({
      id,
      secret_hash: hashSecret(secret),
      agent: o.agent,
      run_id: o.runId ?? null,
      policy: o.policy,
      policy_version: o.policyVersion ?? null,
      label: o.label ?? null,
      metadata: JSON.stringify(o.metadata ?? {}),
      expires_at: o.expiresAt ?? null,
    })
    .execute();
  return {
    id,
    key: `lsk_${id}_${secret}`,
    agent: o.agent,
    run_id: o.runId ?? null,
    policy: o.policy,
    policy_version: o.policyVersion ?? null,
    expires_at: o.expiresAt ?? null,
  };
}

/** Whose access tokens a binding accepts: the issuer, the token's `sub`, and (optionally) its `client_id`. */
export interface OAuthIdentity {
  issuer: string;
  subject: string;
  /** null: a token from any client of this subject. */
  client: string | null;
}

/** 1-256 characters without control characters: a `sub` or `client_id` as an issuer writes it. */
const SUBJECT = /^[^\p{Cc}]{1,256}$/u;

export type BindingOptions = MintOptions & OAuthIdentity;

/** A binding as created: a vault key row with no usable secret, so no `key` to show. */
export type MintedBinding = Omit<MintedKey, 'key'> & OAuthIdentity;

/**
 * Binds an OAuth identity to an agent and a policy: a vault key row whose secret was never shown to anyone (its
 * hash is of random bytes thrown away), so only a verified access token of that identity reaches it. At most one
 * active binding per identity (the unique index decides, so two concurrent creates cannot both win).
 */
export async function mintBinding(db: Db, o: BindingOptions): Promise<MintedBinding> {
  if (!/^https?:\/\/\S{1,500}$/.test(o.issuer)) throw new KeyError('the OAuth issuer must be an http(s) URL');
  if (!SUBJECT.test(o.subject))
    throw new KeyError('--oauth-subject must be 1-256 printable characters (the token’s sub claim)');
  if (o.client !== null && !SUBJECT.test(o.client))
    throw new KeyError('--oauth-client must be 1-256 printable characters (the token’s client_id claim)');
  await checkMint(db, o);
  const id = newId();
  try {
    await db
      .insertInto('vault_keys')
      .values({
        id,
        secret_hash: hashSecret(randomBytes(32).toString('hex')),
        agent: o.agent,
        run_id: o.runId ?? null,
        policy: o.policy,
        policy_version: o.policyVersion ?? null,
        label: o.label ?? null,
        metadata: JSON.stringify(o.metadata ?? {}),
        expires_at: o.expiresAt ?? null,
        oauth_issuer: o.issuer,
        oauth_subject: o.subject,
        oauth_client: o.client,
      })
      .execute();
  } catch (error) {
    if ((error as { constraint?: unknown }).constraint !== 'vault_keys_oauth_active') throw error;
    const existing = await db
      .selectFrom('vault_keys')
      .select('id')
      .where('oauth_issuer', '=', o.issuer)
      .where('oauth_subject', '=', o.subject)
      .where(sql<string>`coalesce(oauth_client, '')`, '=', o.client ?? '')
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    throw new KeyError(
      `key ${existing?.id ?? '?'} already binds this subject${o.client ? ' and client' : ''}; revoke it first (leash keys revoke ${existing?.id ?? 'ID'})`,
    );
  }
  return {
    id,
    agent: o.agent,
    run_id: o.runId ?? null,
    policy: o.policy,
    policy_version: o.policyVersion ?? null,
    expires_at: o.expiresAt ?? null,
    issuer: o.issuer,
    subject: o.subject,
    client: o.client,
  };
}

export type RevokeTarget = { id: string } | { agent: string } | { runId: string };

/**
 * Revokes keys and returns the ids revoked now. Each key's admission lock is taken exclusively first, so the
 * revoke waits out admissions in flight and every admission that starts later sees it: once this returns,
 * no call of these keys is admitted, on any replica. Their open approval requests are cancelled (`key_revoked`)
 * in the same transaction, so no one can approve a call these keys can no longer make. `by` is recorded on each key
 * (`revoked_by`) and as one operator action, in the same transaction.
 */
export async function revokeKeys(
  db: Db,
  target: RevokeTarget,
  reason = 'revoked by operator',
  by: Actor = SYSTEM_ACTOR,
): Promise<string[]> {
  const done = await db.transaction().execute(async (trx) => {
    await durableCommit(trx);
    let q = trx.selectFrom('vault_keys').select('id').where('revoked_at', 'is', null);
    if ('id' in target) q = q.where('id', '=', target.id);
    else if ('agent' in target) q = q.where('agent', '=', target.agent);
    else q = q.where('run_id', '=', target.runId);
    const ids = (await q.orderBy('id').execute()).map((r) => r.id);
    if (!ids.length) return { revoked: [], cancelled: [] };
    // One fixed order, so two revokes of overlapping sets cannot deadlock.
    await sql`select pg_advisory_xact_lock(leash_key_lock_id(s.id)) from (select id from unnest(${ids}::text[]) as id order by id) as s`.execute(
      trx,
    );
    const rows = await trx
      .updateTable('vault_keys')
      // clock_timestamp(): the moment the row changed (after waiting out in-flight admissions), so no
      // admitted audit row can carry a later time than the revoke.
      .set({ revoked_at: sql<Date>`clock_timestamp()`, revoked_reason: reason, revoked_by: actorName(by) })
      .where('id', 'in', ids)
      .where('revoked_at', 'is', null)
      .returning('id')
      .execute();
    const revoked = rows.map((r) => r.id);
    const cancelled = await cancelForKeys(trx, revoked, 'key_revoked');
    if (revoked.length)
      await recordAction(trx, by, 'key.revoke', revokeTargetText(target), {
        key_ids: revoked,
        reason,
        ...(cancelled.length ? { approvals_cancelled: cancelled } : {}),
      });
    return { revoked, cancelled };
  });
  approvalsChanged(done.cancelled);
  return done.revoked;
}

/** How a revoke target reads in the operator actions: `key:<id>`, `agent:<name>` or `run:<id>`. */
export function revokeTargetText(target: RevokeTarget): string {
  return 'id' in target
    ? `key:${target.id}`
    : 'agent' in target
      ? `agent:${target.agent}`
      : `run:${target.runId}`;
}

/**
 * New secret for the same key identity and history. Takes the key's admission lock exclusively, like revoke, so once
 * this returns no call presenting the old secret is admitted (admission re-checks the secret under that lock). `by`
 * is recorded on the key (`rotated_by`) and as an operator action, in the same transaction.
 */
export async function rotateKey(db: Db, id: string, by: Actor = SYSTEM_ACTOR): Promise<string> {
  const secret = newSecret();
  const row = await db.transaction().execute(async (trx) => {
    await durableCommit(trx);
    await sql`select pg_advisory_xact_lock(leash_key_lock_id(${id}))`.execute(trx);
    const rotated = await trx
      .updateTable('vault_keys')
      .set({ secret_hash: hashSecret(secret), rotated_at: sql<Date>`now()`, rotated_by: actorName(by) })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      // A binding has no secret to give: rotating it would turn it into a vault key.
      .where('oauth_subject', 'is', null)
      .returning('id')
      .executeTakeFirst();
    if (rotated) await recordAction(trx, by, 'key.rotate', `key:${id}`);
    return rotated;
  });
  if (!row) throw new KeyError(`no active vault key '${id}' (an OAuth binding has no secret to rotate)`);
  return `lsk_${id}_${secret}`;
}

export interface KeyRow {
  id: string;
  agent: string;
  run_id: string | null;
  policy: string;
  policy_version: number | null;
  label: string | null;
  metadata: Record<string, string>;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  revoked_reason: string | null;
  revoked_by: string | null;
  rotated_at: Date | null;
  rotated_by: string | null;
  /** An OAuth binding's identity; null on a vault key. */
  oauth_issuer: string | null;
  oauth_subject: string | null;
  oauth_client: string | null;
  status: 'active' | 'revoked' | 'expired';
}

const keyColumns = [
  'id',
  'agent',
  'run_id',
  'policy',
  'policy_version',
  'label',
  'metadata',
  'created_at',
  'expires_at',
  'revoked_at',
  'revoked_reason',
  'revoked_by',
  'rotated_at',
  'rotated_by',
  'oauth_issuer',
  'oauth_subject',
  'oauth_client',
] as const;

function withStatus(r: Omit<KeyRow, 'status'>): KeyRow {
  const status = r.revoked_at
    ? 'revoked'
    : r.expires_at && r.expires_at.getTime() <= Date.now()
      ? 'expired'
      : 'active';
  return { ...r, status };
}

export async function listKeys(
  db: Db,
  f: { agent?: string; runId?: string; active?: boolean } = {},
): Promise<KeyRow[]> {
  let q = db.selectFrom('vault_keys').select(keyColumns).orderBy('created_at', 'desc').limit(1000);
  if (f.agent) q = q.where('agent', '=', f.agent);
  if (f.runId) q = q.where('run_id', '=', f.runId);
  if (f.active) {
    q = q
      .where('revoked_at', 'is', null)
      .where((w) => w.or([w('expires_at', 'is', null), w('expires_at', '>', sql<Date>`now()`)]));
  }
  return (await q.execute()).map(withStatus);
}

export async function getKey(db: Db, id: string): Promise<KeyRow | undefined> {
  const row = await db.selectFrom('vault_keys').select(keyColumns).where('id', '=', id).executeTakeFirst();
  return row ? withStatus(row) : undefined;
}
