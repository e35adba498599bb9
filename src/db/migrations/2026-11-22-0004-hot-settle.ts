// Frozen: settling becomes a HOT update (no indexed column changes), so a settle writes no index entries.
// The admitted USD value gets its own immutable column for "tool over $X" queries, and rows still to settle
// are tracked in a small side table instead of a partial index whose predicate columns settle changes.
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    alter table audit_log set (fillfactor = 85);
    alter table audit_log add column usd_micros bigint not null default 0;
    update audit_log set usd_micros = greatest(cost_micros, reserved_micros) where decision = 'allowed';
    create index audit_tool_ts_usd_v2 on audit_log (tool, ts, usd_micros);
    drop index audit_tool_ts_usd;

    drop index audit_unsettled; -- the partial index; its name becomes the table's
    create table audit_unsettled (
      id uuid primary key,
      ts timestamptz not null
    );
    insert into audit_unsettled (id, ts)
      select id, ts from audit_log
      where decision = 'allowed' and (outcome in ('pending', 'unknown') or cost_status = 'pending');
    create index audit_unsettled_ts on audit_unsettled (ts);

    create or replace function leash_admit(p_key_id text, p_cost bigint, p_windows jsonb, p_row jsonb)
    returns jsonb language plpgsql as $$
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
          for w in select value from jsonb_array_elements(done) loop
            if w->>'kind' = 'usd_day' then
              update spend_windows set reserved_micros = reserved_micros - p_cost
                where scope = w->>'scope' and kind = 'usd_day' and window_start = (w->>'window_start')::timestamptz;
            else
              update spend_windows set requests = requests - 1
                where scope = w->>'scope' and kind = 'requests_hour' and window_start = (w->>'window_start')::timestamptz;
            end if;
          end loop;
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

    `.execute(db);
}
