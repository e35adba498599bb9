-- Legacy: how versions before 2026-12-06-0013-replays settled calls (leash_settle_calls since, which does not credit
-- a replay again; leash_correct_replays corrects what this one wrote). Nothing in this version calls it; it stays so
-- that a replica still on such a version keeps working during an upgrade. To retire it, a migration drops it and
-- this file goes in the same change.
--
-- Settle many calls (asynchronous commit: a lost settle leaves the row pending for reconcile), set-based: the
-- rows locked in id order, each row's new outcome and cost, the object ids it creates claimed (an id another
-- row owns goes to metadata.vendor_object_id_conflict), every row updated in one statement (a HOT update: no
-- indexed column changes), then each window row changed once, in leash_window_order, as admissions lock them.
-- Items: {id, outcome, cost, cost_status, patch}; for one id given twice, the last wins. Returns rows settled.
create or replace function leash_settle_batch(p_items jsonb) returns integer language plpgsql as $$
declare
  settled integer;
  deltas jsonb;
  d record;
begin
  perform set_config('synchronous_commit', 'off', true);
  with items as (
    select distinct on (x.id) x.id, x.outcome, x.cost, x.cost_status, coalesce(x.patch, '{}') as patch
      from rows from (jsonb_to_recordset(p_items)
                      as (id uuid, outcome text, cost bigint, cost_status text, patch jsonb))
           with ordinality as x(id, outcome, cost, cost_status, patch, n)
      order by x.id, x.n desc
  ), locked as (
    select a.id, a.vendor, a.operation, a.reserved_micros, a.cost_micros, a.cost_status, a.budget,
           a.vendor_object_id, i.outcome, i.cost, i.cost_status as given_status, i.patch
      from audit_log a join items i on i.id = a.id
      -- The batch's rows by primary key, whatever the planner guesses of the batch's size.
      where a.id = any (array(select id from items))
        and a.decision = 'allowed' and (a.outcome in ('pending', 'unknown') or a.cost_status = 'pending')
      order by a.id
      for update of a
  ), computed as (
    select l.*,
           case when l.outcome = 'unknown' then l.reserved_micros else 0 end as new_reserved,
           case when l.outcome = 'unknown' then l.cost_micros when l.outcome = 'failed' then 0 else l.cost end
             as new_cost,
           case when l.outcome = 'unknown' then l.cost_status when l.outcome = 'failed' then 'none'
                when l.cost = 0 and l.given_status = 'settled' then 'settled' else l.given_status end as new_status,
           l.patch->>'vendor_object_id' is not null and l.vendor is not null
             and coalesce(l.operation, '') not like 'GET %' as creates
      from locked l
  ), claimed as (
    insert into audit_objects (vendor, object_id, audit_id)
      select c.vendor, c.patch->>'vendor_object_id', c.id from computed c where c.creates
        order by c.vendor, c.patch->>'vendor_object_id'
      on conflict (vendor, object_id) do nothing
      returning audit_id
  ), owned as (
    select c.*,
           -- Owned: claimed now, claimed before this statement began, or already on the (locked, latest)
           -- row, which only ever holds an id it owns (a claim committed while this waited for the row).
           not c.creates or c.id in (select audit_id from claimed)
             or c.vendor_object_id is not distinct from c.patch->>'vendor_object_id'
             or o.audit_id is not distinct from c.id as ok
      from computed c
      -- One index lookup per row (LIMIT keeps the planner from hashing the whole table).
      left join lateral (
        select o0.audit_id from audit_objects o0
          where c.creates and o0.vendor = c.vendor and o0.object_id = c.patch->>'vendor_object_id'
          limit 1) o on true
  ), upd as (
    update audit_log a set
        outcome = c.outcome,
        reserved_micros = c.new_reserved,
        cost_micros = c.new_cost,
        cost_status = c.new_status,
        settled_at = case when c.outcome = 'unknown' then a.settled_at else clock_timestamp() end,
        vendor_request_id = coalesce(c.patch->>'vendor_request_id', a.vendor_request_id),
        vendor_object_id = case when c.ok then coalesce(c.patch->>'vendor_object_id', a.vendor_object_id)
                                else a.vendor_object_id end,
        http_status = coalesce((c.patch->>'http_status')::integer, a.http_status),
        error = coalesce(c.patch->>'error', a.error),
        amount = coalesce((c.patch->>'amount')::bigint, a.amount),
        currency = coalesce(c.patch->>'currency', a.currency),
        latency_ms = coalesce((c.patch->>'latency_ms')::integer, a.latency_ms),
        metadata = a.metadata || coalesce(c.patch->'metadata', '{}')
                   || case when c.ok then '{}'::jsonb
                           else jsonb_build_object('vendor_object_id_conflict', c.patch->>'vendor_object_id') end
      from owned c
      where a.id = c.id
      returning a.id, c.budget, c.reserved_micros - c.new_reserved as give_back, c.new_cost - c.cost_micros as spend,
                c.outcome, c.new_status
  ), gone as (
    -- By primary key: a join here was planned as a hash join over the whole (churning) table.
    delete from audit_unsettled u
      where u.id = any (array(select upd.id from upd
                                where upd.outcome not in ('pending', 'unknown') and upd.new_status <> 'pending'))
  )
  select (select count(*)::integer from upd),
         (select coalesce(jsonb_agg(jsonb_build_object('scope', g.scope, 'ws', g.ws, 'give_back', g.give_back,
                                                       'spend', g.spend)), '[]'::jsonb)
            from (select b->>'scope' as scope, (b->>'window_start')::timestamptz as ws,
                         sum(upd.give_back) as give_back, sum(upd.spend) as spend
                    from upd, jsonb_array_elements(upd.budget) b
                    where b->>'kind' = 'usd_day'
                    group by 1, 2) g)
    into settled, deltas;

  for d in
    select value->>'scope' as scope, (value->>'ws')::timestamptz as ws, (value->>'give_back')::bigint as give_back,
           (value->>'spend')::bigint as spend
      from jsonb_array_elements(deltas)
      order by leash_window_order(value->>'scope', 'usd_day', (value->>'ws')::timestamptz) collate "C"
  loop
    continue when d.give_back = 0 and d.spend = 0;
    update spend_windows
      set reserved_micros = reserved_micros - d.give_back,
          spent_micros = greatest(spent_micros + d.spend, 0),
          updated_at = now()
      where scope = d.scope and kind = 'usd_day' and window_start = d.ws;
  end loop;
  return settled;
end $$;
