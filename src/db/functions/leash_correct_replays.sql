-- Rows the settle before replays (leash_settle_batch and leash_settle, still called by a replica on a version
-- before 2026-12-06-0013-replays) counted twice: a succeeded row whose object another row of the same vault key
-- owns, kept aside as metadata.vendor_object_id_conflict with its cost counted. Each becomes a replay of the owner
-- (cost 0, reservation 0, metadata.replay_of), and what it held comes off its windows, in the same transaction,
-- each row once (locked, then re-checked). From p_since on, at most p_limit rows. Returns [{id, replay_of,
-- cost_micros}]. `leash reconcile` calls it.
create or replace function leash_correct_replays(p_since timestamptz, p_limit integer) returns jsonb
  language plpgsql as $$
declare
  fixed jsonb;
  deltas jsonb;
  d record;
begin
  with twice as (
    select a.id, a.cost_micros, a.reserved_micros, a.budget, o.audit_id as owner
      from audit_log a
      join audit_objects o on o.vendor = a.vendor and o.object_id = a.metadata->>'vendor_object_id_conflict'
      join audit_log w on w.id = o.audit_id
      where a.ts >= p_since and a.decision = 'allowed' and a.outcome = 'succeeded'
        and a.metadata ? 'vendor_object_id_conflict' and not a.metadata ? 'replay_of'
        and w.id <> a.id and w.key_id is not distinct from a.key_id
      order by a.id
      limit p_limit
      for update of a
  ), upd as (
    update audit_log a set
        cost_micros = 0,
        reserved_micros = 0,
        cost_status = 'settled',
        vendor_object_id = a.metadata->>'vendor_object_id_conflict',
        metadata = (a.metadata - 'vendor_object_id_conflict')
                   || jsonb_build_object('replay_of', t.owner, 'replay_corrected_at', clock_timestamp())
      from twice t
      where a.id = t.id
      returning a.id, t.owner, t.cost_micros, t.reserved_micros, t.budget
  ), gone as (
    delete from audit_unsettled u where u.id = any (array(select upd.id from upd))
  )
  select (select coalesce(jsonb_agg(jsonb_build_object('id', upd.id, 'replay_of', upd.owner,
                                                       'cost_micros', upd.cost_micros) order by upd.id), '[]')
            from upd),
         (select coalesce(jsonb_agg(jsonb_build_object('scope', g.scope, 'ws', g.ws, 'spent', g.spent,
                                                       'reserved', g.reserved)), '[]'::jsonb)
            from (select b->>'scope' as scope, (b->>'window_start')::timestamptz as ws,
                         sum(upd.cost_micros) as spent, sum(upd.reserved_micros) as reserved
                    from upd, jsonb_array_elements(upd.budget) b
                    where b->>'kind' = 'usd_day'
                    group by 1, 2) g)
    into fixed, deltas;

  for d in
    select value->>'scope' as scope, (value->>'ws')::timestamptz as ws, (value->>'spent')::bigint as spent,
           (value->>'reserved')::bigint as reserved
      from jsonb_array_elements(deltas)
      order by leash_window_order(value->>'scope', 'usd_day', (value->>'ws')::timestamptz) collate "C"
  loop
    continue when d.spent = 0 and d.reserved = 0;
    update spend_windows
      set spent_micros = greatest(spent_micros - d.spent, 0),
          reserved_micros = greatest(reserved_micros - d.reserved, 0),
          updated_at = now()
      where scope = d.scope and kind = 'usd_day' and window_start = d.ws;
  end loop;
  return fixed;
end $$;
