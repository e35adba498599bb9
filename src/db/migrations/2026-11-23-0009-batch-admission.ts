// Frozen: admission in batches. Concurrent calls of one process are admitted together: one round trip, one durable
// commit and one update per window row for the whole batch, instead of one each per call. Each call is still
// decided on its own, in order, against the state the calls before it left (caps, loop guard, approvals), exactly
// as leash_admit_call decides a single call. Settles stop touching audit_log's indexes: the one-object-one-row rule
// moves from a unique index on audit_log to a side table (audit_objects), so a settle is a HOT update.
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    -- The one global order every transaction locks window rows in: key scopes before policy scopes, USD before
    -- requests, then window start and scope (byte order). Admissions (single or batched) and settles all use it.
    -- (Inlinable: every function in it is immutable.)
    create function leash_window_order(p_scope text, p_kind text, p_start timestamptz) returns text
      language sql immutable as $$
      select (case when p_scope like 'key:%' then '0' else '1' end) || (case when p_kind = 'usd_day' then '0' else '1' end)
             || lpad(extract(epoch from p_start - timestamptz '1970-01-01 00:00:00+00')::bigint::text, 12, '0') || p_scope
    $$;

    -- One call's reservations, one window at a time in the order given (leash_admit_call's loop, unchanged): all or
    -- nothing. Returns {ok, code, details, remaining_micros}.
    create function leash_reserve_each(p_windows jsonb, p_cost bigint) returns jsonb language plpgsql as $$
    declare
      w jsonb;
      cap bigint;
      left_after bigint;
      done jsonb := '[]';
      min_left bigint;
      code text;
      details jsonb := '{}';
      now_ts timestamptz := clock_timestamp();
    begin
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
          min_left := least(coalesce(min_left, left_after), left_after);
        else
          if cap < 1 then
            left_after := null;
          else
            insert into spend_windows as s (scope, kind, window_start, requests)
              values (w->>'scope', 'requests_hour', (w->>'window_start')::timestamptz, 1)
              on conflict (scope, kind, window_start) do update
                set requests = s.requests + 1, updated_at = now_ts
                where s.requests + 1 <= cap
              returning cap - s.requests into left_after;
          end if;
          if left_after is null then
            code := 'request_limit_exceeded';
            details := jsonb_build_object('scope', w->>'scope', 'cap_requests', cap, 'window', 'hour',
                         'resets_at', (w->>'window_start')::timestamptz + interval '1 hour');
            exit;
          end if;
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
        return jsonb_build_object('ok', false, 'code', code, 'details', details);
      end if;
      return jsonb_build_object('ok', true, 'remaining_micros', min_left);
    end $$;

    -- Admit a batch of calls, one by one, in one statement and one transaction. p: a JSON array of admission payloads, each as
    -- leash_admit_call takes it: {key_id, secret_hash (hex), policy_version, cost, windows, row, loop_limit,
    -- loop_seconds, approval}. Returns their results in the same order: {admitted, code, details, ts,
    -- remaining_micros[, held][, durable_lsn]}, or {stale: true, policy_version} (nothing written for that call).
    --
    -- Each call is decided as leash_admit_call decides it, in order, against what the calls before it left. First
    -- every advisory lock the batch needs, in one global order: key locks shared, in key id order (revoke and
    -- rotate take them exclusively in the same order, and wait for this transaction to end, durably); then approval
    -- and loop-guard locks by id. The keys are read once; key, approval and loop-guard decisions are made per call;
    -- then the reservations of all remaining calls at once — one conditional update per window row, in
    -- leash_window_order — and only when one of those would pass a cap, the calls one by one (leash_reserve_each),
    -- after locking the rest of the batch's window rows in the same order. Then every audit row in one statement.
    -- The caller commits synchronously: window rows are held through one WAL flush per batch (not per call), and
    -- no vendor is called before that commit returns.
    create function leash_admit_batch_each(p jsonb) returns jsonb language plpgsql as $$
    declare
      cnt integer;
      i integer;
      j integer;
      x jsonb;
      it record;
      kid text;
      lk bigint;
      w record;
      wj jsonb;
      keys jsonb;
      k jsonb;
      code text;
      details jsonb;
      now_ts timestamptz;
      p_row jsonb;
      p_hash text;
      n integer;
      appr approvals%rowtype;
      held_expires timestamptz;
      -- per call
      c_state text[];        -- stale | held | refused | candidate | admitted
      c_code text[];
      c_details jsonb[];
      c_row jsonb[];
      c_ts timestamptz[];
      c_ndb integer[];       -- identical allowed calls already committed (loop guard), null without a guard
      c_consume jsonb[];     -- the approved request this call would spend
      c_left bigint[];
      c_res jsonb[];
      looped jsonb;
      lkey text;
      -- the optimistic pass
      agg jsonb := '{}';
      wkey text;
      a jsonb;
      left_after bigint;
      ok boolean := true;
      cum jsonb := '{}';
      rr jsonb;
      audit_rows jsonb[] := '{}';
      admitted_keys text[] := '{}';
      lsn text;
    begin
      if jsonb_typeof(p) is distinct from 'array' or jsonb_array_length(p) = 0 then
        raise exception 'admission batch must be a non-empty array';
      end if;
      -- Whatever the server's default: this transaction's commit waits for its WAL to be flushed.
      if current_setting('synchronous_commit') = 'off' then
        perform set_config('synchronous_commit', 'on', true);
      end if;
      cnt := jsonb_array_length(p);
      c_state := array_fill(null::text, array[cnt]);
      c_code := c_state;
      c_details := array_fill(null::jsonb, array[cnt]);
      c_row := c_details;
      c_consume := c_details;
      c_res := c_details;
      c_ts := array_fill(null::timestamptz, array[cnt]);
      c_ndb := array_fill(null::integer, array[cnt]);
      c_left := array_fill(null::bigint, array[cnt]);

      -- 1. Advisory locks, in the global order.
      for kid in select distinct x0->>'key_id' from jsonb_array_elements(p) x0 order by 1 loop
        perform pg_advisory_xact_lock_shared(leash_key_lock_id(kid));
      end loop;
      if cnt = 1 then
        x := p->0;
        if jsonb_typeof(x->'approval') = 'object' and x->'row'->>'args_hash' is not null then
          perform pg_advisory_xact_lock(hashtextextended('leash:approval:' || (x->>'key_id') || ':' || (x->'row'->>'args_hash'), 0));
        end if;
        if x->>'loop_limit' is not null then
          perform pg_advisory_xact_lock(hashtextextended('leash:loop:' || (x->>'key_id') || ':' || (x->'row'->>'args_hash'), 0));
        end if;
      else
        for lk in
          select distinct hashtextextended('leash:approval:' || (x0->>'key_id') || ':' || (x0->'row'->>'args_hash'), 0)
            from jsonb_array_elements(p) x0
            where jsonb_typeof(x0->'approval') = 'object' and x0->'row'->>'args_hash' is not null
          order by 1
        loop
          perform pg_advisory_xact_lock(lk);
        end loop;
        for lk in
          select distinct hashtextextended('leash:loop:' || (x0->>'key_id') || ':' || (x0->'row'->>'args_hash'), 0)
            from jsonb_array_elements(p) x0 where x0->>'loop_limit' is not null
          order by 1
        loop
          perform pg_advisory_xact_lock(lk);
        end loop;
      end if;

      -- 2. The keys, read once (locked against revoke and rotate above).
      select coalesce(jsonb_object_agg(kk.id, jsonb_build_object(
               'secret_hash', encode(kk.secret_hash, 'hex'), 'revoked_at', kk.revoked_at, 'expires_at', kk.expires_at,
               'version', coalesce(kk.policy_version, pp.latest_version))), '{}')
        into keys
        from vault_keys kk join policies pp on pp.name = kk.policy
        where kk.id in (select x0->>'key_id' from jsonb_array_elements(p) x0);

      -- 3. Per call, in order: key, approval, and the loop guard's committed count.
      for i in 1 .. cnt loop
        x := p->(i - 1);
        code := null;
        details := '{}';
        now_ts := clock_timestamp();
        p_row := x->'row';
        p_hash := p_row->>'args_hash';
        k := keys->(x->>'key_id');
        c_ts[i] := now_ts;

        if k is null or k->>'secret_hash' <> lower(x->>'secret_hash') then
          code := 'key_invalid';
          p_row := p_row || jsonb_build_object('agent', null, 'run_id', null, 'policy', null, 'policy_version', null);
        elsif k->>'revoked_at' is not null then
          code := 'key_revoked';
          details := jsonb_build_object('revoked_at', k->'revoked_at');
        elsif k->>'expires_at' is not null and (k->>'expires_at')::timestamptz <= now_ts then
          code := 'key_expired';
          details := jsonb_build_object('expired_at', k->'expires_at');
        elsif (k->>'version')::integer <> (x->>'policy_version')::integer then
          c_state[i] := 'stale';
          c_res[i] := jsonb_build_object('stale', true, 'policy_version', (k->>'version')::integer);
          continue;
        end if;

        -- Approval: the latest request for this key and digest decides (calls of one key and digest are
        -- serialised by the lock above, and a request created earlier in this batch is seen here).
        if code is null and jsonb_typeof(x->'approval') = 'object' then
          if p_hash is null then
            raise exception 'approval needs the arguments digest';
          end if;
          select * into appr from approvals ap
            where ap.key_id = x->>'key_id' and ap.args_hash = p_hash
            order by ap.created_at desc limit 1
            for update;
          if found and appr.status = 'approved' and appr.expires_at > now_ts then
            c_consume[i] := jsonb_build_object('id', appr.id, 'decided_by', appr.decided_by,
                              'decided_at', appr.decided_at, 'note', appr.note);
          elsif found and appr.status = 'pending' and appr.expires_at > now_ts then
            c_state[i] := 'held';
            c_details[i] := jsonb_build_object('approval_id', appr.id, 'expires_at', appr.expires_at);
          elsif found and appr.status = 'denied' and appr.expires_at > now_ts then
            code := 'approval_denied';
            details := jsonb_build_object('approval_id', appr.id, 'decided_by', appr.decided_by,
                         'decided_at', appr.decided_at, 'note', appr.note, 'until', appr.expires_at);
          elsif found and appr.status in ('pending', 'approved', 'expired') and appr.expires_at <= now_ts
                and appr.expiry_audit_id is null then
            update approvals set status = 'expired', expiry_audit_id = (p_row->>'id')::uuid,
                expired_at = coalesce(expired_at, now_ts)
              where id = appr.id;
            code := 'approval_expired';
            details := jsonb_build_object('approval_id', appr.id, 'expired_at', appr.expires_at);
          else
            held_expires := now_ts + make_interval(secs => (x->'approval'->>'expires_seconds')::integer);
            insert into approvals (id, key_id, agent, run_id, policy, policy_version, tool, operation, door,
                                   args_hash, request, usd_micros, amount, currency, status, created_at, expires_at,
                                   held_audit_id)
              values ((p_row->>'id')::uuid, x->>'key_id', p_row->>'agent', p_row->>'run_id', p_row->>'policy',
                      (p_row->>'policy_version')::integer, p_row->>'tool', p_row->>'operation',
                      coalesce(p_row->>'door', 'mcp'), p_hash, p_row->'request',
                      coalesce((x->'approval'->>'usd_micros')::bigint, 0), (p_row->>'amount')::bigint,
                      p_row->>'currency', 'pending', now_ts, held_expires, (p_row->>'id')::uuid);
            c_state[i] := 'held';
            c_details[i] := jsonb_build_object('approval_id', (p_row->>'id')::uuid, 'expires_at', held_expires);
          end if;
        end if;
        c_row[i] := p_row;
        if c_state[i] = 'held' then
          continue;
        end if;
        if code is not null then
          c_state[i] := 'refused';
          c_code[i] := code;
          c_details[i] := details;
          continue;
        end if;
        if x->>'loop_limit' is not null then
          select count(*)::int into n from audit_log al
            where al.key_id = x->>'key_id' and al.args_hash = p_hash and al.decision = 'allowed'
              and al.ts > now_ts - make_interval(secs => (x->>'loop_seconds')::integer);
          c_ndb[i] := n;
        end if;
        c_state[i] := 'candidate';
      end loop;

      -- 4a. Optimistic: the loop guard counting earlier candidates as admitted, then every remaining call's
      --     reservations at once, one conditional update per window row.
      looped := '{}';
      for i in 1 .. cnt loop
        continue when c_state[i] is distinct from 'candidate';
        x := p->(i - 1);
        if c_ndb[i] is not null then
          lkey := (x->>'key_id') || '|' || (x->'row'->>'args_hash');
          n := c_ndb[i] + coalesce((looped->>lkey)::integer, 0);
          if n >= (x->>'loop_limit')::integer then
            c_state[i] := 'refused';
            c_code[i] := 'loop_detected';
            c_details[i] := jsonb_build_object('identical_calls', n, 'limit', (x->>'loop_limit')::integer,
                                               'window_seconds', (x->>'loop_seconds')::integer);
            continue;
          end if;
          looped := looped || jsonb_build_object(lkey, coalesce((looped->>lkey)::integer, 0) + 1);
        end if;
        for wj in select value from jsonb_array_elements(x->'windows') loop
          wkey := leash_window_order(wj->>'scope', wj->>'kind', (wj->>'window_start')::timestamptz);
          a := agg->wkey;
          if a is null then
            a := wj || jsonb_build_object('sum', 0, 'calls', 0);
          elsif (a->>'cap')::bigint <> (wj->>'cap')::bigint then
            ok := false;  -- two caps for one window in one batch: decide one by one
          end if;
          agg := agg || jsonb_build_object(wkey, a || jsonb_build_object(
                   'sum', (a->>'sum')::bigint + (x->>'cost')::bigint, 'calls', (a->>'calls')::integer + 1));
        end loop;
      end loop;
      for wkey in select key from jsonb_each(agg) order by key collate "C" loop
        exit when not ok;
        a := agg->wkey;
        left_after := null;
        if a->>'kind' = 'usd_day' then
          if (a->>'sum')::bigint <= (a->>'cap')::bigint then
            insert into spend_windows as s (scope, kind, window_start, reserved_micros)
              values (a->>'scope', 'usd_day', (a->>'window_start')::timestamptz, (a->>'sum')::bigint)
              on conflict (scope, kind, window_start) do update
                set reserved_micros = s.reserved_micros + excluded.reserved_micros, updated_at = clock_timestamp()
                where s.spent_micros + s.reserved_micros + excluded.reserved_micros <= (a->>'cap')::bigint
              returning (a->>'cap')::bigint - s.spent_micros - s.reserved_micros into left_after;
          end if;
        elsif (a->>'calls')::integer <= (a->>'cap')::bigint then
          insert into spend_windows as s (scope, kind, window_start, requests)
            values (a->>'scope', 'requests_hour', (a->>'window_start')::timestamptz, (a->>'calls')::integer)
            on conflict (scope, kind, window_start) do update
              set requests = s.requests + excluded.requests, updated_at = clock_timestamp()
              where s.requests + excluded.requests <= (a->>'cap')::bigint
            returning (a->>'cap')::bigint - s.requests into left_after;
        end if;
        if left_after is null then
          ok := false;
        else
          agg := agg || jsonb_build_object(wkey, a || jsonb_build_object('applied', true, 'left', left_after));
        end if;
      end loop;

      if ok then
        -- Each call's remaining budget: what its USD windows had left once it and the calls before it reserved.
        for i in 1 .. cnt loop
          continue when c_state[i] is distinct from 'candidate';
          x := p->(i - 1);
          for wj in select value from jsonb_array_elements(x->'windows') loop
            continue when wj->>'kind' <> 'usd_day';
            wkey := leash_window_order(wj->>'scope', wj->>'kind', (wj->>'window_start')::timestamptz);
            a := agg->wkey;
            cum := cum || jsonb_build_object(wkey, coalesce((cum->>wkey)::bigint, 0) + (x->>'cost')::bigint);
            left_after := (a->>'left')::bigint + (a->>'sum')::bigint - (cum->>wkey)::bigint;
            c_left[i] := least(coalesce(c_left[i], left_after), left_after);
          end loop;
          c_state[i] := 'admitted';
        end loop;
      else
        -- 4b. A cap is in reach: give back what the optimistic pass took, lock every window row of the batch in
        --     the global order (continuing it), and decide the calls one by one.
        for wkey in select key from jsonb_each(agg) order by key collate "C" loop
          a := agg->wkey;
          if a->>'applied' = 'true' then
            if a->>'kind' = 'usd_day' then
              update spend_windows set reserved_micros = reserved_micros - (a->>'sum')::bigint
                where scope = a->>'scope' and kind = 'usd_day' and window_start = (a->>'window_start')::timestamptz;
            else
              update spend_windows set requests = requests - (a->>'calls')::integer
                where scope = a->>'scope' and kind = 'requests_hour' and window_start = (a->>'window_start')::timestamptz;
            end if;
          end if;
        end loop;
        for w in
          select d.scope, d.kind, d.ws from (
            select distinct w0->>'scope' as scope, w0->>'kind' as kind, (w0->>'window_start')::timestamptz as ws
              from jsonb_array_elements(p) x0, jsonb_array_elements(x0->'windows') w0) d
          order by leash_window_order(d.scope, d.kind, d.ws) collate "C"
        loop
          insert into spend_windows (scope, kind, window_start) values (w.scope, w.kind, w.ws)
            on conflict (scope, kind, window_start) do nothing;
          perform 1 from spend_windows s where s.scope = w.scope and s.kind = w.kind and s.window_start = w.ws for update;
        end loop;
        looped := '{}';
        for i in 1 .. cnt loop
          continue when c_state[i] is distinct from 'candidate' and c_code[i] is distinct from 'loop_detected';
          x := p->(i - 1);
          c_state[i] := 'candidate';
          c_code[i] := null;
          c_details[i] := null;
          if c_ndb[i] is not null then
            lkey := (x->>'key_id') || '|' || (x->'row'->>'args_hash');
            n := c_ndb[i] + coalesce((looped->>lkey)::integer, 0);
            if n >= (x->>'loop_limit')::integer then
              c_state[i] := 'refused';
              c_code[i] := 'loop_detected';
              c_details[i] := jsonb_build_object('identical_calls', n, 'limit', (x->>'loop_limit')::integer,
                                                 'window_seconds', (x->>'loop_seconds')::integer);
              continue;
            end if;
          end if;
          rr := leash_reserve_each(x->'windows', (x->>'cost')::bigint);
          if (rr->>'ok')::boolean then
            c_state[i] := 'admitted';
            c_left[i] := (rr->>'remaining_micros')::bigint;
            if c_ndb[i] is not null then
              looped := looped || jsonb_build_object(lkey, coalesce((looped->>lkey)::integer, 0) + 1);
            end if;
          else
            c_state[i] := 'refused';
            c_code[i] := rr->>'code';
            c_details[i] := rr->'details';
          end if;
        end loop;
      end if;

      -- 5. The audit rows, in one statement; approvals spent by admitted calls.
      for i in 1 .. cnt loop
        continue when c_state[i] = 'stale';
        x := p->(i - 1);
        p_row := c_row[i];
        if c_state[i] = 'held' then
          audit_rows := audit_rows || (p_row || jsonb_build_object(
            'ts', c_ts[i], 'decision', 'held', 'reason', 'approval_required', 'outcome', 'none',
            'reserved_micros', 0, 'cost_micros', 0, 'usd_micros', 0, 'cost_status', 'none', 'budget', '[]'::jsonb,
            'door', coalesce(p_row->>'door', 'mcp'),
            'sandbox', coalesce((p_row->>'sandbox')::boolean, false),
            'metadata', coalesce(p_row->'metadata', '{}') || jsonb_build_object('approval', jsonb_build_object(
                          'id', c_details[i]->'approval_id', 'status', 'pending',
                          'expires_at', c_details[i]->'expires_at'))));
          c_res[i] := jsonb_build_object('admitted', false, 'held', true, 'code', 'approval_required',
                        'details', c_details[i], 'ts', c_ts[i], 'remaining_micros', null);
          continue;
        end if;
        if c_state[i] = 'admitted' and c_consume[i] is not null then
          update approvals set status = 'used', used_at = c_ts[i], used_by_audit_id = (p_row->>'id')::uuid
            where id = (c_consume[i]->>'id')::uuid;
          p_row := p_row || jsonb_build_object('metadata', coalesce(p_row->'metadata', '{}') || jsonb_build_object(
                     'approval', c_consume[i] || jsonb_build_object('status', 'used')));
        end if;
        audit_rows := audit_rows || (p_row || jsonb_build_object(
          'ts', c_ts[i],
          'decision', case when c_state[i] = 'admitted' then 'allowed' else 'denied' end,
          'reason', c_code[i],
          'outcome', case when c_state[i] = 'admitted' then 'pending' else 'none' end,
          'reserved_micros', case when c_state[i] = 'admitted' then (x->>'cost')::bigint else 0 end,
          'cost_micros', 0,
          'usd_micros', case when c_state[i] = 'admitted' then (x->>'cost')::bigint else 0 end,
          'cost_status', case when c_state[i] = 'admitted' and (x->>'cost')::bigint > 0 then 'estimated' else 'none' end,
          'budget', case when c_state[i] = 'admitted' then coalesce(x->'windows', '[]') else '[]' end,
          'door', coalesce(p_row->>'door', 'mcp'),
          'sandbox', coalesce((p_row->>'sandbox')::boolean, false),
          'metadata', coalesce(p_row->'metadata', '{}')
                      || case when c_state[i] = 'admitted' then '{}' else jsonb_build_object('denial', c_details[i]) end));
        if c_state[i] = 'admitted' then
          admitted_keys := admitted_keys || (x->>'key_id');
          c_res[i] := jsonb_build_object('admitted', true, 'code', null, 'details', '{}'::jsonb, 'ts', c_ts[i],
                                         'remaining_micros', c_left[i]);
        else
          c_res[i] := jsonb_build_object('admitted', false, 'code', c_code[i], 'details', c_details[i],
                                         'ts', c_ts[i], 'remaining_micros', null);
        end if;
      end loop;
      if cardinality(audit_rows) > 0 then
        insert into audit_log select * from jsonb_populate_recordset(null::audit_log, to_jsonb(audit_rows));
      end if;
      if cardinality(admitted_keys) > 0 then
        insert into audit_unsettled (id, ts)
          select (c_row[g]->>'id')::uuid, c_ts[g] from generate_subscripts(c_state, 1) g where c_state[g] = 'admitted';
      end if;
      -- The caller's commit (synchronous) flushes the WAL past this position, so past every row written here.
      if cardinality(admitted_keys) > 0 then
        lsn := pg_current_wal_insert_lsn()::text;
        for i in 1 .. cnt loop
          if c_state[i] = 'admitted' then
            c_res[i] := c_res[i] || jsonb_build_object('durable_lsn', lsn);
          end if;
        end loop;
      end if;
      return to_jsonb(c_res);
    end $$;

    -- Admit a batch (see leash_admit_batch_each for what is decided and in which order). The usual case in a few
    -- set-based statements: every lock, every call's key and loop-guard decision in one query, one conditional
    -- update per window row for all calls still in, every audit row in one insert. Batches with a call held for a
    -- person, or whose calls would pass a cap together, are decided one by one by leash_admit_batch_each instead.
    create function leash_admit_batch(p jsonb) returns jsonb language plpgsql as $$
    declare
      c_code text[];
      c_details jsonb[];
      c_ts timestamptz[];
      c_version integer[];
      w record;
      left_after bigint;
      applied jsonb := '[]';
      lsn text;
      res jsonb;
    begin
      if jsonb_typeof(p) is distinct from 'array' or jsonb_array_length(p) = 0 then
        raise exception 'admission batch must be a non-empty array';
      end if;
      -- Whatever the server's default: this transaction's commit waits for its WAL to be flushed.
      if current_setting('synchronous_commit') = 'off' then
        perform set_config('synchronous_commit', 'on', true);
      end if;
      if jsonb_path_exists(p, '$[*].approval ? (@.type() == "object")') then
        return leash_admit_batch_each(p);
      end if;

      -- Locks in the global order: keys shared (as revoke and rotate take them exclusively), then loop guards.
      perform pg_advisory_xact_lock_shared(leash_key_lock_id(s.k))
        from (select distinct x->>'key_id' as k from jsonb_array_elements(p) x order by 1) s;
      perform pg_advisory_xact_lock(s.l)
        from (select distinct hashtextextended('leash:loop:' || (x->>'key_id') || ':' || (x->'row'->>'args_hash'), 0) as l
                from jsonb_array_elements(p) x where x->>'loop_limit' is not null order by 1) s;

      -- Each call's key and loop-guard decision. The loop guard counts identical allowed calls already committed
      -- plus those admitted before this one in the batch (with d committed and limit L, the first L - d pass).
      with it as (
        select t.n::integer as n, t.x, clock_timestamp() as ts
          from jsonb_array_elements(p) with ordinality as t(x, n)
      ), keyed as (
        select it.n, it.x, it.ts, coalesce(kk.policy_version, pp.latest_version) as version,
               case when kk.id is null or encode(kk.secret_hash, 'hex') <> lower(it.x->>'secret_hash') then 'key_invalid'
                    when kk.revoked_at is not null then 'key_revoked'
                    when kk.expires_at is not null and kk.expires_at <= it.ts then 'key_expired'
                    when coalesce(kk.policy_version, pp.latest_version) <> (it.x->>'policy_version')::integer then 'stale'
               end as code,
               kk.revoked_at, kk.expires_at
          from it
          left join vault_keys kk on kk.id = it.x->>'key_id'
          left join policies pp on pp.name = kk.policy
      ), looped as (
        select keyed.*,
               case when code is null and x->>'loop_limit' is not null then
                 (select count(*)::integer from audit_log al
                   where al.key_id = keyed.x->>'key_id' and al.args_hash = keyed.x->'row'->>'args_hash'
                     and al.decision = 'allowed'
                     and al.ts > keyed.ts - make_interval(secs => (keyed.x->>'loop_seconds')::integer))
               end as d,
               row_number() over (partition by code is null and x->>'loop_limit' is not null, x->>'key_id',
                                  x->'row'->>'args_hash' order by n) as r
          from keyed
      ), decided as (
        select n, ts, version, revoked_at, expires_at, x,
               case when d is not null then d + least(r - 1, greatest((x->>'loop_limit')::integer - d, 0)) end as seen,
               code
          from looped
      )
      select array_agg(case when code is null and seen >= (x->>'loop_limit')::integer then 'loop_detected' else code end
                       order by n),
             array_agg(case when code is null and seen >= (x->>'loop_limit')::integer then
                              jsonb_build_object('identical_calls', seen, 'limit', (x->>'loop_limit')::integer,
                                                 'window_seconds', (x->>'loop_seconds')::integer)
                            when code = 'key_revoked' then jsonb_build_object('revoked_at', revoked_at)
                            when code = 'key_expired' then jsonb_build_object('expired_at', expires_at)
                            else '{}'::jsonb end
                       order by n),
             array_agg(ts order by n),
             array_agg(version order by n)
        into c_code, c_details, c_ts, c_version
        from decided;

      -- The reservations of every call still in, at once: one conditional update per window row, in the global
      -- order. If one would pass its cap, give back what was taken and decide the calls one by one.
      for w in
        select g.* from (
          select wj->>'scope' as scope, wj->>'kind' as kind, (wj->>'window_start')::timestamptz as ws,
                 min((wj->>'cap')::bigint) as cap, max((wj->>'cap')::bigint) as cap_max,
                 sum((t.x->>'cost')::bigint) as total, count(*)::integer as calls
            from jsonb_array_elements(p) with ordinality as t(x, n), jsonb_array_elements(t.x->'windows') wj
            where c_code[t.n::integer] is null
            group by 1, 2, 3) g
        order by leash_window_order(g.scope, g.kind, g.ws) collate "C"
      loop
        left_after := null;
        if w.cap = w.cap_max and w.kind = 'usd_day' and w.total <= w.cap then
          insert into spend_windows as s (scope, kind, window_start, reserved_micros)
            values (w.scope, 'usd_day', w.ws, w.total)
            on conflict (scope, kind, window_start) do update
              set reserved_micros = s.reserved_micros + excluded.reserved_micros, updated_at = clock_timestamp()
              where s.spent_micros + s.reserved_micros + excluded.reserved_micros <= w.cap
            returning w.cap - s.spent_micros - s.reserved_micros into left_after;
        elsif w.cap = w.cap_max and w.kind = 'requests_hour' and w.calls <= w.cap then
          insert into spend_windows as s (scope, kind, window_start, requests)
            values (w.scope, 'requests_hour', w.ws, w.calls)
            on conflict (scope, kind, window_start) do update
              set requests = s.requests + excluded.requests, updated_at = clock_timestamp()
              where s.requests + excluded.requests <= w.cap
            returning w.cap - s.requests into left_after;
        end if;
        if left_after is null then
          for w in select value->>'scope' as scope, value->>'kind' as kind, (value->>'window_start')::timestamptz as ws,
                          (value->>'total')::bigint as total, (value->>'calls')::integer as calls
                     from jsonb_array_elements(applied)
          loop
            if w.kind = 'usd_day' then
              update spend_windows set reserved_micros = reserved_micros - w.total
                where scope = w.scope and kind = 'usd_day' and window_start = w.ws;
            else
              update spend_windows set requests = requests - w.calls
                where scope = w.scope and kind = 'requests_hour' and window_start = w.ws;
            end if;
          end loop;
          return leash_admit_batch_each(p);
        end if;
        applied := applied || jsonb_build_array(jsonb_build_object('scope', w.scope, 'kind', w.kind,
                     'window_start', w.ws, 'total', w.total, 'calls', w.calls, 'left', left_after));
      end loop;

      -- Every audit row in one statement (a refused call's row names no key holder when the key was not valid).
      insert into audit_log
        select * from jsonb_populate_recordset(null::audit_log, (
          select jsonb_agg(
                   case when c_code[t.n::integer] = 'key_invalid'
                        then t.x->'row' || jsonb_build_object('agent', null, 'run_id', null, 'policy', null,
                                                             'policy_version', null)
                        else t.x->'row' end
                   || jsonb_build_object(
                     'ts', c_ts[t.n::integer],
                     'decision', case when c_code[t.n::integer] is null then 'allowed' else 'denied' end,
                     'reason', c_code[t.n::integer],
                     'outcome', case when c_code[t.n::integer] is null then 'pending' else 'none' end,
                     'reserved_micros', case when c_code[t.n::integer] is null then (t.x->>'cost')::bigint else 0 end,
                     'cost_micros', 0,
                     'usd_micros', case when c_code[t.n::integer] is null then (t.x->>'cost')::bigint else 0 end,
                     'cost_status', case when c_code[t.n::integer] is null and (t.x->>'cost')::bigint > 0
                                         then 'estimated' else 'none' end,
                     'budget', case when c_code[t.n::integer] is null then coalesce(t.x->'windows', '[]') else '[]' end,
                     'door', coalesce(t.x->'row'->>'door', 'mcp'),
                     'sandbox', coalesce((t.x->'row'->>'sandbox')::boolean, false),
                     'metadata', coalesce(t.x->'row'->'metadata', '{}')
                                 || case when c_code[t.n::integer] is null then '{}'::jsonb
                                         else jsonb_build_object('denial', c_details[t.n::integer]) end)
                   order by t.n)
            from jsonb_array_elements(p) with ordinality as t(x, n)
            where c_code[t.n::integer] is distinct from 'stale'));
      insert into audit_unsettled (id, ts)
        select (t.x->'row'->>'id')::uuid, c_ts[t.n::integer]
          from jsonb_array_elements(p) with ordinality as t(x, n)
          where c_code[t.n::integer] is null;
      -- The caller's commit (synchronous) flushes the WAL past this position, so past every row written here.
      lsn := pg_current_wal_insert_lsn()::text;

      -- Results, in order. A call's remaining budget: the least its USD windows had left once it and the calls
      -- before it in the batch had reserved.
      with c as (
        select t.n::integer as n, (t.x->>'cost')::bigint as cost, wj->>'scope' as scope,
               (wj->>'window_start')::timestamptz as ws
          from jsonb_array_elements(p) with ordinality as t(x, n), jsonb_array_elements(t.x->'windows') wj
          where c_code[t.n::integer] is null and wj->>'kind' = 'usd_day'
      ), a as (
        select value->>'scope' as scope, (value->>'window_start')::timestamptz as ws,
               (value->>'total')::bigint as total, (value->>'left')::bigint as lft
          from jsonb_array_elements(applied) where value->>'kind' = 'usd_day'
      ), rem as (
        select z.n, min(z.left_i) as left_i from (
          select c.n, a.lft + a.total - sum(c.cost) over (partition by c.scope, c.ws order by c.n
                                                          rows between unbounded preceding and current row) as left_i
            from c join a on a.scope = c.scope and a.ws = c.ws) z
          group by z.n
      )
      select jsonb_agg(
               case when c_code[t.n::integer] = 'stale'
                      then jsonb_build_object('stale', true, 'policy_version', c_version[t.n::integer])
                    when c_code[t.n::integer] is null
                      then jsonb_build_object('admitted', true, 'code', null, 'details', '{}'::jsonb,
                                              'ts', c_ts[t.n::integer], 'remaining_micros', rem.left_i,
                                              'durable_lsn', lsn)
                    else jsonb_build_object('admitted', false, 'code', c_code[t.n::integer],
                                            'details', c_details[t.n::integer], 'ts', c_ts[t.n::integer],
                                            'remaining_micros', null) end
               order by t.n)
        into res
        from jsonb_array_elements(p) with ordinality as t(x, n)
        left join rem on rem.n = t.n::integer;
      return res;
    end $$;

    -- One vendor object, one audit row: the owner of each object id a call created, in a side table instead of a
    -- unique index on audit_log, so settling a row changes no indexed column of audit_log (a HOT update).
    create table audit_objects (
      vendor     text not null,
      object_id  text not null,
      audit_id   uuid not null,
      primary key (vendor, object_id)
    );
    insert into audit_objects (vendor, object_id, audit_id)
      select vendor, vendor_object_id, id from audit_log
        where vendor_object_id is not null and vendor is not null and operation not like 'GET %';
    drop index audit_vendor_object;

    -- May this row record this object id? Yes for reads (GET: many rows may name one object) and for the row that
    -- owns it (claimed now, or before by this row); no when another row owns it.
    create function leash_claim_object(p_vendor text, p_object text, p_operation text, p_audit uuid) returns boolean
      language plpgsql as $$
    begin
      if p_object is null or p_vendor is null or p_operation like 'GET %' then
        return true;
      end if;
      insert into audit_objects (vendor, object_id, audit_id) values (p_vendor, p_object, p_audit)
        on conflict (vendor, object_id) do nothing;
      if found then
        return true;
      end if;
      return exists (select 1 from audit_objects o
                     where o.vendor = p_vendor and o.object_id = p_object and o.audit_id = p_audit);
    end $$;

    -- Settle one call (reconcile): as before, and an object id another row owns goes to
    -- metadata.vendor_object_id_conflict instead of failing.
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

      if not leash_claim_object(r.vendor, p_patch->>'vendor_object_id', r.operation, r.id) then
        p_patch := p_patch - 'vendor_object_id' || jsonb_build_object('metadata',
                     coalesce(p_patch->'metadata', '{}') || jsonb_build_object('vendor_object_id_conflict',
                     p_patch->>'vendor_object_id'));
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

    -- Settles lock window rows in the same global order as admissions (leash_window_order), so neither can
    -- deadlock the other whatever the scope names.
    create or replace function leash_settle_batch(p_items jsonb) returns integer language plpgsql as $$
    declare
      it jsonb;
      r audit_log%rowtype;
      w jsonb;
      new_reserved bigint;
      new_cost bigint;
      new_status text;
      deltas jsonb := '{}';
      dkey text;
      d jsonb;
      settled integer := 0;
    begin
      perform set_config('synchronous_commit', 'off', true);
      for it in select value from jsonb_array_elements(p_items) order by value->>'id' loop
        select * into r from audit_log where id = (it->>'id')::uuid for update;
        if not found or r.decision <> 'allowed'
           or (r.outcome not in ('pending', 'unknown') and r.cost_status <> 'pending') then
          continue;
        end if;
        if it->>'outcome' = 'unknown' then
          new_reserved := r.reserved_micros; new_cost := r.cost_micros; new_status := r.cost_status;
        elsif it->>'outcome' = 'failed' then
          new_reserved := 0; new_cost := 0; new_status := 'none';
        else
          new_reserved := 0;
          new_cost := (it->>'cost')::bigint;
          new_status := case when new_cost = 0 and it->>'cost_status' = 'settled' then 'settled'
                             else it->>'cost_status' end;
        end if;
        -- One vendor object, one row (the unique index would otherwise abort the whole batch).
        if not leash_claim_object(r.vendor, it->'patch'->>'vendor_object_id', r.operation, r.id) then
          it := jsonb_set(it, '{patch}', (it->'patch') - 'vendor_object_id' || jsonb_build_object('metadata',
                  coalesce(it->'patch'->'metadata', '{}') || jsonb_build_object('vendor_object_id_conflict',
                  it->'patch'->>'vendor_object_id')));
        end if;
        for w in select value from jsonb_array_elements(r.budget) loop
          if w->>'kind' = 'usd_day' then
            dkey := leash_window_order(w->>'scope', 'usd_day', (w->>'window_start')::timestamptz);
            d := coalesce(deltas->dkey, jsonb_build_object('scope', w->>'scope', 'window_start', w->>'window_start',
                                                          'reserved', 0, 'spent', 0));
            deltas := deltas || jsonb_build_object(dkey, d || jsonb_build_object(
              'reserved', (d->>'reserved')::bigint + (r.reserved_micros - new_reserved),
              'spent', (d->>'spent')::bigint + (new_cost - r.cost_micros)));
          end if;
        end loop;
        update audit_log set
          outcome = it->>'outcome',
          reserved_micros = new_reserved,
          cost_micros = new_cost,
          cost_status = new_status,
          settled_at = case when it->>'outcome' = 'unknown' then settled_at else clock_timestamp() end,
          vendor_request_id = coalesce(it->'patch'->>'vendor_request_id', vendor_request_id),
          vendor_object_id = coalesce(it->'patch'->>'vendor_object_id', vendor_object_id),
          http_status = coalesce((it->'patch'->>'http_status')::integer, http_status),
          error = coalesce(it->'patch'->>'error', error),
          amount = coalesce((it->'patch'->>'amount')::bigint, amount),
          currency = coalesce(it->'patch'->>'currency', currency),
          latency_ms = coalesce((it->'patch'->>'latency_ms')::integer, latency_ms),
          metadata = metadata || coalesce(it->'patch'->'metadata', '{}')
        where id = r.id;
        if it->>'outcome' not in ('pending', 'unknown') and new_status <> 'pending' then
          delete from audit_unsettled where id = r.id;
        end if;
        settled := settled + 1;
      end loop;

      for dkey in select key from jsonb_each(deltas) order by key collate "C" loop
        d := deltas->dkey;
        update spend_windows
          set reserved_micros = reserved_micros - (d->>'reserved')::bigint,
              spent_micros = greatest(spent_micros + (d->>'spent')::bigint, 0),
              updated_at = now()
          where scope = d->>'scope' and kind = 'usd_day' and window_start = (d->>'window_start')::timestamptz;
      end loop;
      return settled;
    end $$;
  `.execute(db);
}
