-- Trigger vendor_credentials_changed (created by migration 2026-12-06-0015-credential-version): every change to
-- vendor_credentials, by any writer (`leash vendors set/remove` on any machine, psql), notifies channel
-- leash_credentials once per statement at commit, so each replica drops its cached vendor clients before its next
-- call instead of keeping an old credential for up to 30 s. Credentials change rarely: the database-wide lock
-- NOTIFY takes at commit (why the audit log has none) costs nothing here.
create or replace function leash_vendor_credentials_changed() returns trigger language plpgsql as $$
begin
  perform pg_notify('leash_credentials', '');
  return null;
end $$;
