// Frozen: every action has a name. Operators get credentials of their own (`leash operators add NAME`: a token shown
// once, kept here only as its sha-256), and every change an operator makes (approve, deny, revoke, rotate, policy
// apply, vendor credential set/remove, operators added and removed) is one row in operator_actions, written in the
// same transaction as the change, naming who (an operator, `admin` for the break-glass LEASH_ADMIN_TOKEN, or what the
// CLI was told) and through which door. The changed rows also carry the name where they had none: a key's
// revoked_by and rotated_by, a policy version's applied_by, a credential's updated_by. One role owns leash's
// database (README, "Grants leash needs"), so there is no role to grant these tables to.
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table operators (
      id          uuid primary key,
      name        text not null check (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
      -- sha-256 of the whole token (260 random bits): looked up by it, never stored itself.
      token_hash  bytea not null unique check (octet_length(token_hash) = 32),
      created_at  timestamptz not null default clock_timestamp(),
      created_by  text not null,
      removed_at  timestamptz,
      removed_by  text,
      check ((removed_at is null) = (removed_by is null))
    );
    -- A name is held by one operator at a time; a removed one's rows stay, so old actions keep their name.
    create unique index operators_active_name on operators (name) where removed_at is null;

    create table operator_actions (
      id      bigint generated always as identity primary key,
      ts      timestamptz not null default clock_timestamp(),
      actor   text not null check (length(actor) between 1 and 200),
      via     text not null check (via in ('admin_api', 'console', 'cli', 'link', 'system')),
      action  text not null check (action ~ '^[a-z]+[.][a-z_]+$'),
      target  text not null check (length(target) between 1 and 300),
      detail  jsonb not null default '{}'
    );
    create index operator_actions_ts on operator_actions (ts);
    create index operator_actions_actor_ts on operator_actions (actor, ts);

    alter table vault_keys add column revoked_by text, add column rotated_by text;
    alter table policy_versions add column applied_by text;
    alter table vendor_credentials add column updated_by text;
  `.execute(db);
}
