-- The advisory lock of one tripwire scope ('key:<id>', 'run:<id>', 'agent:<name>', 'policy:<name>'). Every call a wire
-- measures holds it from before its figure is read until its transaction ends, so the calls of one scope are decided
-- one after another and the figure is exact on every replica. Taken after key, approval and loop-guard locks and
-- before window rows: the global order (leash_lock_batch).
create or replace function leash_trip_lock_id(p_scope text) returns bigint language sql immutable as $$
  select hashtextextended('leash:trip:' || p_scope, 0)
$$;
