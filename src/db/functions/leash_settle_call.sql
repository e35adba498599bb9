-- Settle one call (reconcile, and by hand): leash_settle_calls with one item, strict; reports what it did.
create or replace function leash_settle_call(p_id uuid, p_outcome text, p_cost bigint, p_cost_status text, p_patch jsonb)
  returns jsonb language plpgsql as $$
declare
  r audit_log%rowtype;
begin
  select * into r from audit_log where id = p_id;
  if not found then
    return jsonb_build_object('settled', false, 'reason', 'not_found');
  end if;
  if r.decision <> 'allowed' or (r.outcome not in ('pending', 'unknown') and r.cost_status <> 'pending') then
    return jsonb_build_object('settled', false, 'reason', 'already_settled', 'outcome', r.outcome);
  end if;
  if leash_settle_calls(jsonb_build_array(jsonb_build_object('id', p_id, 'outcome', p_outcome, 'cost', p_cost,
                                                             'cost_status', p_cost_status, 'patch', p_patch)),
                        true) = 0 then
    select * into r from audit_log where id = p_id;
    return jsonb_build_object('settled', false, 'reason', 'already_settled', 'outcome', r.outcome);
  end if;
  select * into r from audit_log where id = p_id;
  return jsonb_build_object('settled', true, 'outcome', r.outcome, 'cost_micros', r.cost_micros,
                            'reserved_micros', r.reserved_micros, 'cost_status', r.cost_status,
                            'replay_of', r.metadata->'replay_of');
end $$;
