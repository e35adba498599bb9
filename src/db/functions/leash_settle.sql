-- Legacy: how versions before 2026-12-06-0013-replays settled one call (leash_settle_call since, which does not
-- credit a replay again). Nothing in this version calls it; it stays so that a replica still on such a version keeps
-- working during an upgrade. To retire it, a migration drops it and this file goes in the same change.
--
-- Settle one admitted call. Moves what the row holds in its windows from reserved to spent.
-- outcome: succeeded | failed | unknown. cost_status: settled | pending (priced later by the vendor).
-- Idempotent: a row already settled is returned unchanged. An object id another row owns fails the settle
-- (unique_violation), leaving the row as it was.
create or replace function leash_settle(p_id uuid, p_outcome text, p_cost bigint, p_cost_status text, p_patch jsonb)
  returns jsonb language plpgsql as $$
declare
  r audit_log%rowtype;
  w jsonb;
  new_reserved bigint;
  new_cost bigint;
  new_status text;
begin
  perform set_config('synchronous_commit', 'off', true);
  select * into r from audit_log where id = p_id for update;
  if not found then
    return jsonb_build_object('settled', false, 'reason', 'not_found');
  end if;
  if r.decision <> 'allowed'
     or (r.outcome not in ('pending', 'unknown') and r.cost_status <> 'pending') then
    return jsonb_build_object('settled', false, 'reason', 'already_settled', 'outcome', r.outcome);
  end if;

  if p_outcome = 'unknown' then
    new_reserved := r.reserved_micros;
    new_cost := r.cost_micros;
    new_status := r.cost_status;
  elsif p_outcome = 'failed' then
    new_reserved := 0;
    new_cost := 0;
    new_status := 'none';
  else
    new_reserved := 0;
    new_cost := p_cost;
    new_status := case when p_cost = 0 and p_cost_status = 'settled' then 'settled' else p_cost_status end;
  end if;

  -- Reconcile must not credit one object to two rows: refuse, as the unique index did (the caller reports it).
  if not leash_claim_object(r.vendor, p_patch->>'vendor_object_id', r.operation, r.id) then
    raise exception 'vendor object % already belongs to another audit row', p_patch->>'vendor_object_id'
      using errcode = 'unique_violation';
  end if;

  for w in select value from jsonb_array_elements(r.budget) loop
    if w->>'kind' = 'usd_day' then
      update spend_windows
        set reserved_micros = reserved_micros - (r.reserved_micros - new_reserved),
            spent_micros = greatest(spent_micros + (new_cost - r.cost_micros), 0),
            updated_at = now()
        where scope = w->>'scope' and kind = 'usd_day' and window_start = (w->>'window_start')::timestamptz;
    end if;
  end loop;

  update audit_log set
    outcome = p_outcome,
    reserved_micros = new_reserved,
    cost_micros = new_cost,
    cost_status = new_status,
    settled_at = case when p_outcome = 'unknown' then settled_at else clock_timestamp() end,
    vendor_request_id = coalesce(p_patch->>'vendor_request_id', vendor_request_id),
    vendor_object_id = coalesce(p_patch->>'vendor_object_id', vendor_object_id),
    http_status = coalesce((p_patch->>'http_status')::integer, http_status),
    error = coalesce(p_patch->>'error', error),
    amount = coalesce((p_patch->>'amount')::bigint, amount),
    currency = coalesce(p_patch->>'currency', currency),
    latency_ms = coalesce((p_patch->>'latency_ms')::integer, latency_ms),
    metadata = metadata || coalesce(p_patch->'metadata', '{}')
  where id = p_id;

  if p_outcome not in ('pending', 'unknown') and new_status <> 'pending' then
    delete from audit_unsettled where id = p_id;
  end if;

  return jsonb_build_object('settled', true, 'outcome', p_outcome, 'cost_micros', new_cost,
                            'reserved_micros', new_reserved, 'cost_status', new_status);
end $$;
