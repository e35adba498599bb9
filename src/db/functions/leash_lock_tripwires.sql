-- The locks of the scopes a call's tripwires measure (leash_trip_lock_id), each once, in lock-id order: the order
-- leash_lock_batch takes them in for a whole batch. p_wires: the payload's `tripwires` ([{kind, id, …}]).
create or replace function leash_lock_tripwires(p_wires jsonb) returns void language plpgsql as $$
begin
  perform pg_advisory_xact_lock(s.l)
    from (select distinct leash_trip_lock_id((w->>'kind') || ':' || (w->>'id')) as l
            from jsonb_array_elements(p_wires) w order by 1) s;
end $$;
