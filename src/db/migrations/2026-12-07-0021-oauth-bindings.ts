// Frozen: OAuth bindings (issue 29). A binding maps an access token's identity (its issuer, `sub` and, optionally,
// `client_id`) to an agent and a policy. It IS a vault key row, so expiry, run, revoke, caps, approvals, pauses and
// audit rows work for it exactly as for a key: three nullable columns say whose tokens it accepts, and its
// secret_hash is the hash of a secret no one was ever given (no `lsk_…` key can match it). At most one active
// binding per identity, so a token maps to one key. One role owns leash's database (README, "Grants leash needs"),
// so there is no role to grant anything to.
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    alter table vault_keys
      add column oauth_issuer  text check (length(oauth_issuer) between 1 and 512),
      add column oauth_subject text check (length(oauth_subject) between 1 and 256),
      add column oauth_client  text check (length(oauth_client) between 1 and 256),
      add constraint vault_keys_oauth_identity
        check ((oauth_issuer is null) = (oauth_subject is null) and (oauth_client is null or oauth_subject is not null));
    create unique index vault_keys_oauth_active
      on vault_keys (oauth_issuer, oauth_subject, coalesce(oauth_client, ''))
      where oauth_subject is not null and revoked_at is null;
    -- A token's lookup also finds revoked bindings (the caller hears key_revoked): bindings of one subject are few.
    create index vault_keys_oauth on vault_keys (oauth_issuer, oauth_subject) where oauth_subject is not null;
  `.execute(db);
}
