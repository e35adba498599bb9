// Operators: people's credentials for the admin API and the console. A token (`lso_` + 52 base32 characters, 260
// random bits) is shown once at `leash operators add`; only its sha-256 is stored, and a presented token is looked up
// by that hash on every request, so a removed operator is refused by every replica from the next request on.
import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { recordAction, type Actor } from '../audit/operator-actions.js';
import { durableCommit, type Db } from '../db/database.js';
import { hashSecret } from './vault-keys.js';

/** An operator problem someone can act on: a bad or taken name, no such operator. */
export class OperatorError extends Error {
  override name = 'OperatorError';
  constructor(
    message: string,
    readonly reason: 'invalid' | 'exists' | 'not_found',
  ) {
    super(message);
  }
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const TOKEN_RE = /^lso_[a-z2-7]{52}$/;
const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** Names that would read as something else in the records: the break-glass token, the doors, the system. */
const RESERVED = new Set(['admin', 'console', 'cli', 'link', 'system']);

/** Why `name` cannot name an operator, or undefined when it can. */
export function operatorNameProblem(name: string): string | undefined {
  if (!NAME_RE.test(name))
    return 'an operator name is 1-64 characters of a-z, 0-9, ".", "_" and "-", starting with a letter or digit';
  if (RESERVED.has(name)) return `'${name}' is reserved (it already means something in the records)`;
  return undefined;
}

/** True for a string shaped like an operator token (checked before any lookup). */
export function looksLikeOperatorToken(token: string): boolean {
  return TOKEN_RE.test(token);
}

function newToken(): string {
  const bytes = randomBytes(52);
  let out = 'lso_';
  for (const b of bytes) out += ALPHABET[b & 31];
  return out;
}

export interface AddedOperator {
  id: string;
  name: string;
  /** The whole token; shown once, never stored. */
  token: string;
  created_at: Date;
}

/** Adds an operator and records who did; the name must not be held by an active operator. */
export async function addOperator(db: Db, name: string, by: Actor): Promise<AddedOperator> {
  const problem = operatorNameProblem(name);
  if (problem) throw new OperatorError(problem, 'invalid');
  const token = newToken();
  const id = randomUUID();
  try {
    return await db.transaction().execute(async (trx) => {
      await durableCommit(trx);
      const row = await trx
        .insertInto('operators')
        .values({ id, name, token_hash: hashSecret(token), created_by: by.name })
        .returning(['created_at'])
        .executeTakeFirstOrThrow();
      await recordAction(trx, by, 'operator.add', `operator:${name}`);
      return { id, name, token, created_at: row.created_at };
    });
  } catch (error) {
    if ((error as { code?: unknown }).code === '23505')
      throw new OperatorError(`an operator named '${name}' already exists`, 'exists');
    throw error;
  }
}

/**
 * Removes an operator: its token is refused from the next request on and its console sessions end (every replica
 * checks the table). Returns false when no active operator has that name.
 */
export async function removeOperator(db: Db, name: string, by: Actor): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    await durableCommit(trx);
    const row = await trx
      .updateTable('operators')
      .set({ removed_at: sql<Date>`clock_timestamp()`, removed_by: by.name })
      .where('name', '=', name)
      .where('removed_at', 'is', null)
      .returning('id')
      .executeTakeFirst();
    if (!row) return false;
    await recordAction(trx, by, 'operator.remove', `operator:${name}`);
    return true;
  });
}

/** An operator as listed: never the token or its hash. */
export interface OperatorRow {
  name: string;
  status: 'active' | 'removed';
  created_at: Date;
  created_by: string;
  removed_at: Date | null;
  removed_by: string | null;
}

/** Active operators by name; with `all`, removed ones too (newest removal last). */
export async function listOperators(db: Db, o: { all?: boolean } = {}): Promise<OperatorRow[]> {
  let q = db
    .selectFrom('operators')
    .select(['name', 'created_at', 'created_by', 'removed_at', 'removed_by'])
    .orderBy(sql`removed_at is not null`)
    .orderBy('name')
    .orderBy('removed_at')
    .limit(10_000);
  if (!o.all) q = q.where('removed_at', 'is', null);
  const rows = await q.execute();
  return rows.map((r) => ({ ...r, status: r.removed_at ? 'removed' : 'active' }));
}

/** The active operator holding this token, or undefined (a malformed token costs no query). */
export async function operatorByToken(
  db: Db,
  token: string,
): Promise<{ id: string; name: string } | undefined> {
  if (!looksLikeOperatorToken(token)) return undefined;
  return db
    .selectFrom('operators')
    .select(['id', 'name'])
    .where('token_hash', '=', hashSecret(token))
    .where('removed_at', 'is', null)
    .executeTakeFirst();
}

/** Which of these operator ids are still active (one query). */
export async function activeOperators(db: Db, ids: readonly string[]): Promise<Set<string>> {
  if (!ids.length) return new Set();
  const rows = await db
    .selectFrom('operators')
    .select('id')
    .where('id', '=', sql<string>`any(${[...ids]}::uuid[])`)
    .where('removed_at', 'is', null)
    .execute();
  return new Set(rows.map((r) => r.id));
}

/** Whether any operator is active: the admin API and console are on when one is (or LEASH_ADMIN_TOKEN is set). */
export async function anyOperators(db: Db): Promise<boolean> {
  const row = await db
    .selectFrom('operators')
    .select(sql<number>`1`.as('one'))
    .where('removed_at', 'is', null)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}
