-- Legacy: how versions before 2026-11-23-0007-one-trip admitted a call (leash_admission and leash_admit_call since).
-- Nothing in this version calls it; it stays so that a replica still on such a version keeps working during an
-- upgrade. To retire it, a migration drops it and this file goes in the same change.
--
-- Admit one tool call: re-check the key, reserve in every window (in the order given, key scope
-- first), and write the audit row, all in the caller's single statement. p_windows items:
-- {scope, kind: usd_day|requests_hour, window_start, cap}. p_row: the audit columns.
create or replace function leash_admit(p_key_id text, p_cost bigint, p_windows jsonb, p_row jsonb) returns jsonb
  language plpgsql as $$
declare
  k record;
  w jsonb;
  cap bigint;
  left_after bigint;
  done jsonb := '[]';
  min_left bigint;
  code text;
  details jsonb := '{}';
  now_ts timestamptz := clock_timestamp();
begin
  select revoked_at, expires_at into k from vault_keys where id = p_key_id for share;
  if not found then
    code := 'key_unknown';
  elsif k.revoked_at is not null then
    code := 'key_revoked';
    details := jsonb_build_object('revoked_at', k.revoked_at);
  elsif k.expires_at is not null and k.expires_at <= now_ts then
    code := 'key_expired';
    details := jsonb_build_object('expired_at', k.expires_at);
  end if;

  if code is null then
    for w in select value from jsonb_array_elements(p_windows) loop
      cap := (w->>'cap')::bigint;
      if w->>'kind' = 'usd_day' then
        if p_cost > cap then
          left_after := null;
        else
          insert into spend_windows as s (scope, kind, window_start, reserved_micros)
            values (w->>'scope', 'usd_day', (w->>'window_start')::timestamptz, p_cost)
            on conflict (scope, kind, window_start) do update
              set reserved_micros = s.reserved_micros + excluded.reserved_micros, updated_at = now_ts
              where s.spent_micros + s.reserved_micros + excluded.reserved_micros <= cap
            returning cap - s.spent_micros - s.reserved_micros into left_after;
        end if;
        if left_after is null then
          code := 'budget_exceeded';
          select jsonb_build_object('scope', w->>'scope', 'cap_micros', cap,
                   'remaining_micros', greatest(cap - coalesce(max(s.spent_micros + s.reserved_micros), 0), 0),
                   'requested_micros', p_cost, 'window', 'day', 'resets_at',
                   (w->>'window_start')::timestamptz + interval '1 day')
            into details from spend_windows s
            where s.scope = w->>'scope' and s.kind = 'usd_day' and s.window_start = (w->>'window_start')::timestamptz;
          exit;
        end if;
      else
        insert into spend_windows as s (scope, kind, window_start, requests)
          values (w->>'scope', 'requests_hour', (w->>'window_start')::timestamptz, 1)
          on conflict (scope, kind, window_start) do update
            set requests = s.requests + 1, updated_at = now_ts
            where s.requests + 1 <= cap
          returning cap - s.requests into left_after;
        if left_after is null or cap < 1 then
          code := 'request_limit_exceeded';
          details := jsonb_build_object('scope', w->>'scope', 'cap_requests', cap, 'window', 'hour',
                       'resets_at', (w->>'window_start')::timestamptz + interval '1 hour');
          exit;
        end if;
      end if;
      if w->>'kind' = 'usd_day' then
        min_left := least(coalesce(min_left, left_after), left_after);
      end if;
      done := done || jsonb_build_array(w);
    end loop;

    if code is not null then
      -- Give back what this call took in the windows before the one that refused it.
      perform leash_give_back(done, p_cost);
      done := '[]';
    end if;
  end if;

  insert into audit_log
    select * from jsonb_populate_record(null::audit_log, p_row || jsonb_build_object(
      'ts', now_ts,
      'decision', case when code is null then 'allowed' else 'denied' end,
      'reason', coalesce(code, p_row->>'reason'),
      'outcome', case when code is null then 'pending' else 'none' end,
      'reserved_micros', case when code is null then p_cost else 0 end,
      'cost_micros', 0,
      'usd_micros', case when code is null then p_cost else 0 end,
      'cost_status', case when code is null and p_cost > 0 then 'estimated' else 'none' end,
      'budget', done,
      'sandbox', coalesce((p_row->>'sandbox')::boolean, false),
      'metadata', coalesce(p_row->'metadata', '{}')
                  || case when code is null then '{}' else jsonb_build_object('denial', details) end));

  if code is null then
    insert into audit_unsettled (id, ts) values ((p_row->>'id')::uuid, now_ts);
  end if;

  return jsonb_build_object('admitted', code is null, 'code', code, 'details', details, 'ts', now_ts,
                            'remaining_micros', min_left);
end $$;
