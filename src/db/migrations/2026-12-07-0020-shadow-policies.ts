// Frozen: shadow policies (issue 27). `leash policies apply FILE --shadow` stores a version that every live call of the
// policy is also decided by, without it deciding anything: `policies.shadow_version` names it (null: no shadow). The
// version is an ordinary row of policy_versions, so versions stay dense and `policies promote` only moves
// latest_version to it. Nothing else changes: a shadow's decision is kept in the audit row's metadata (`shadow`).
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    alter table policies add column shadow_version integer;
    alter table policies add constraint policies_shadow_version_fk
      foreign key (name, shadow_version) references policy_versions (policy, version);
    alter table policies add constraint policies_shadow_not_latest check (shadow_version <> latest_version);
  `.execute(db);
}
