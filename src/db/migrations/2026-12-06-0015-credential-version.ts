// Frozen: every change to vendor_credentials, by any writer (`leash vendors set/remove` on any machine, psql),
// notifies channel leash_credentials once per statement at commit, so each replica drops its cached vendor clients
// before its next call instead of keeping an old credential for up to 30 s. Credentials change rarely: the
// database-wide lock NOTIFY takes at commit (why the audit log has none) costs nothing here.
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create function leash_vendor_credentials_changed() returns trigger
      language plpgsql as $$
    begin
      perform pg_notify('leash_credentials', '');
      return null;
    end $$;

    create trigger vendor_credentials_changed
      after insert or update or delete or truncate on vendor_credentials
      for each statement execute function leash_vendor_credentials_changed();
  `.execute(db);
}
