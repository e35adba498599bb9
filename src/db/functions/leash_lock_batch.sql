-- Every advisory lock the calls of a batch take, in the global order: key locks shared, in key id order (as
-- revoke and rotate take them exclusively), then approval, loop-guard and tripwire-scope locks, each class by id (a
-- call alone takes them in the same order: leash_admit_call). Every batch path calls it before anything else, so it
-- starts with leash_admission_session.
create or replace function leash_lock_batch(p jsonb) returns void language plpgsql as $$
begin
  perform leash_admission_session();
  perform pg_advisory_xact_lock_shared(leash_key_lock_id(s.k))
    from (select distinct x->>'key_id' as k from jsonb_array_elements(p) x order by 1) s;
  perform pg_advisory_xact_lock(s.l)
    from (select distinct on (s0.class, s0.l) s0.l, s0.class from (
            select 0 as class, hashtextextended('leash:approval:' || (x->>'key_id') || ':' || (x->'row'->>'args_hash'), 0) as l
              from jsonb_array_elements(p) x
              where jsonb_typeof(x->'approval') = 'object' and x->'row'->>'args_hash' is not null
            union all
            select 1, hashtextextended('leash:loop:' || (x->>'key_id') || ':' || (x->'row'->>'args_hash'), 0)
              from jsonb_array_elements(p) x where x->>'loop_limit' is not null
            union all
            select 2, leash_trip_lock_id((t->>'kind') || ':' || (t->>'id'))
              from jsonb_array_elements(p) x,
                   jsonb_array_elements(case when jsonb_typeof(x->'tripwires') = 'array' then x->'tripwires'
                                             else '[]' end) t) s0
          order by s0.class, s0.l) s;
end $$;
