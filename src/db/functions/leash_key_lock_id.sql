-- The advisory lock of one vault key. Admission takes it shared, revoke and rotate take it exclusive: a revoke waits
-- out admissions in flight, and an admission that starts after a revoke committed sees it (each statement of an
-- admission takes a new snapshot).
create or replace function leash_key_lock_id(p_key_id text) returns bigint language sql immutable as $$
  select hashtextextended('leash:key:' || p_key_id, 0)
$$;
