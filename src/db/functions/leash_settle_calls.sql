-- Settle calls (asynchronous commit: a lost settle leaves the row pending for reconcile), set-based: the rows locked
-- in id order, each row's new outcome and cost, the object ids it creates claimed (table audit_objects), every row
-- updated in one statement (a HOT update: no indexed column changes), then each window row changed once, in
-- leash_window_order, as admissions lock them. A replay is not new money: a call that succeeded with an object
-- another row of the same vault key owns is a replay of that row; so is one whose answer the vendor marked as
-- replayed (item "replayed": Stripe's Idempotent-Replayed) while another call of the same key, arguments and
-- idempotency key is still unsettled (that call counts the object when it settles, or reconcile does). A replay
-- costs 0, gives its reservation back, claims nothing and names the row that counts the object (metadata.replay_of).
-- An object another key's row owns is marked (metadata.vendor_object_id_conflict), or with p_strict (reconcile)
-- raises unique_violation. Items: {id, outcome, cost, cost_status, patch, replayed}; for one id given twice, the
-- last wins. Returns rows settled. Two statements: the first locks the rows (id order) and claims their objects,
-- first answers before replayed ones; the second sees every claim (its own and those committed meanwhile) to decide
-- who owns what.
create or replace function leash_settle_calls(p_items jsonb, p_strict boolean default false) returns integer
  language plpgsql as $$
declare
  settled integer;
  deltas jsonb;
  firsts jsonb;
  foreign_owned text;
  d record;
begin
  perform set_config('synchronous_commit', 'off', true);

  with items as (
    select distinct on (x.id) x.id, x.outcome, coalesce(x.replayed, false) as replayed,
           x.patch->>'vendor_object_id' as object_id
      from rows from (jsonb_to_recordset(p_items) as (id uuid, outcome text, patch jsonb, replayed boolean))
           with ordinality as x(id, outcome, patch, replayed, n)
      order by x.id, x.n desc
  ), locked as (
    select a.id, a.vendor, a.key_id, a.args_hash, a.ts, a.metadata->>'idempotency_key' as idem, i.outcome,
           i.replayed, i.object_id,
           i.object_id is not null and a.vendor is not null and coalesce(a.operation, '') not like 'GET %'
             as creates
      from audit_log a join items i on i.id = a.id
      where a.id = any (array(select id from items))
        and a.decision = 'allowed' and (a.outcome in ('pending', 'unknown') or a.cost_status = 'pending')
      order by a.id
      for update of a
  ), decided as (
    select l.*,
           case when l.replayed and l.creates and l.outcome = 'succeeded' and l.idem is not null then
             -- The first call of this key and idempotency key, still unsettled (audit_loop's index).
             (select p.id from audit_log p
                where p.key_id = l.key_id and p.args_hash = l.args_hash and p.ts > l.ts - interval '1 day'
                  and p.id <> l.id and p.decision = 'allowed' and p.outcome in ('pending', 'unknown')
                  and p.metadata->>'idempotency_key' = l.idem and not p.metadata ? 'replay_of'
                  and p.id <> all (array(select l2.id from locked l2 where l2.replayed))
                order by p.ts, p.id
                limit 1)
           end as first
      from locked l
  ), claimed as (
    insert into audit_objects (vendor, object_id, audit_id)
      select c.vendor, c.object_id, c.id from decided c where c.creates and c.first is null
        order by c.vendor, c.object_id, c.replayed, c.id
      on conflict (vendor, object_id) do nothing
  )
  select coalesce(jsonb_object_agg(c.id, c.first) filter (where c.first is not null), '{}'::jsonb)
    into firsts from decided c;

  with items as (
    select distinct on (x.id) x.id, x.outcome, x.cost, x.cost_status, coalesce(x.patch, '{}') as patch,
           coalesce(x.replayed, false) as replayed
      from rows from (jsonb_to_recordset(p_items)
                      as (id uuid, outcome text, cost bigint, cost_status text, patch jsonb, replayed boolean))
           with ordinality as x(id, outcome, cost, cost_status, patch, replayed, n)
      order by x.id, x.n desc
  ), mine as (
    -- Locked by the first statement.
    select a.id, a.vendor, a.operation, a.key_id, a.reserved_micros, a.cost_micros, a.cost_status, a.budget,
           a.vendor_object_id, i.outcome, i.cost, i.cost_status as given_status, i.patch, i.replayed,
           i.patch->>'vendor_object_id' is not null and a.vendor is not null
             and coalesce(a.operation, '') not like 'GET %' as creates
      from audit_log a join items i on i.id = a.id
      where a.id = any (array(select id from items))
        and a.decision = 'allowed' and (a.outcome in ('pending', 'unknown') or a.cost_status = 'pending')
  ), owned as (
    select m.*, o.audit_id as owner, w.key_id as owner_key, (firsts->>(m.id::text))::uuid as first
      from mine m
      -- One index lookup per row (LIMIT keeps the planner from hashing the whole table).
      left join lateral (
        select o0.audit_id from audit_objects o0
          where m.creates and o0.vendor = m.vendor and o0.object_id = m.patch->>'vendor_object_id'
          limit 1) o on true
      left join audit_log w on w.id = o.audit_id
  ), classed as (
    select c.*,
           case when c.outcome <> 'succeeded' or not c.creates then null
                when c.owner is not null and c.owner <> c.id and c.owner_key is not distinct from c.key_id
                  then c.owner
                when c.owner is null then c.first end as replay_of,
           not c.creates or c.owner = c.id or c.owner is null
             or c.vendor_object_id is not distinct from c.patch->>'vendor_object_id'
             or c.owner_key is not distinct from c.key_id as ok
      from owned c
  ), computed as (
    select c.*,
           case when c.outcome = 'unknown' then c.reserved_micros else 0 end as new_reserved,
           case when c.outcome = 'unknown' then c.cost_micros when c.outcome = 'failed' then 0
                when c.replay_of is not null then 0 else c.cost end as new_cost,
           case when c.outcome = 'unknown' then c.cost_status when c.outcome = 'failed' then 'none'
                when c.replay_of is not null then 'settled'
                when c.cost = 0 and c.given_status = 'settled' then 'settled' else c.given_status end as new_status
      from classed c
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
                   || case when c.replay_of is not null then jsonb_build_object('replay_of', c.replay_of)
                           else '{}'::jsonb end
                   || case when c.replayed then jsonb_build_object('vendor_replayed', true) else '{}'::jsonb end
                   || case when c.ok then '{}'::jsonb
                           else jsonb_build_object('vendor_object_id_conflict', c.patch->>'vendor_object_id') end
      from computed c
      where a.id = c.id
      returning a.id, c.budget, c.reserved_micros - c.new_reserved as give_back, c.new_cost - c.cost_micros as spend,
                c.outcome, c.new_status, c.ok
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
                    group by 1, 2) g),
         (select min(upd.id::text) from upd where not upd.ok)
    into settled, deltas, foreign_owned;

  -- Reconcile must not credit one object to two keys' rows: refuse, as leash_settle did (the caller reports it).
  if p_strict and foreign_owned is not null then
    raise exception 'a vendor object of audit row % already belongs to another key''s audit row', foreign_owned
      using errcode = 'unique_violation';
  end if;

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
