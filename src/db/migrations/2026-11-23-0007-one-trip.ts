// Frozen: admission in one round trip (key check, policy version, atomic loop guard, reservations, audit row),
// revoke serialised against admission by an advisory lock instead of a row lock, and batched settlement.
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    -- Which front door a call came through: MCP tools or the vendors' own REST paths.
    alter table audit_log add column door text not null default 'mcp' check (door in ('mcp', 'http'));

    -- The lock admission takes shared and revoke takes exclusive: a revoke waits out admissions in flight,
    -- and an admission that starts after a revoke committed sees it (each statement below takes a new snapshot).
    create function leash_key_lock_id(p_key_id text) returns bigint language sql immutable as $$
      select hashtextextended('leash:key:' || p_key_id, 0)
    $$;

    -- Admit one call. p: {key_id, secret_hash (hex), policy_version, cost, windows, row, loop_limit, loop_seconds}.
    -- Returns {admitted, code, details, ts, remaining_micros}, or {stale: true, policy_version} (no row written)
    -- when the key's policy moved on since the caller evaluated it.
    create function leash_admit_call(p jsonb) returns jsonb language plpgsql as $$
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
      p_key_id text := p->>'key_id';
      p_cost bigint := (p->>'cost')::bigint;
      p_row jsonb := p->'row';
      n integer;
    begin
      perform pg_advisory_xact_lock_shared(leash_key_lock_id(p_key_id));
      select kk.secret_hash, kk.revoked_at, kk.expires_at, coalesce(kk.policy_version, pp.latest_version) as version
        into k
        from vault_keys kk join policies pp on pp.name = kk.policy
        where kk.id = p_key_id;
      if not found or k.secret_hash <> decode(p->>'secret_hash', 'hex') then
        code := 'key_invalid';
        p_row := p_row || jsonb_build_object('agent', null, 'run_id', null, 'policy', null, 'policy_version', null);
      elsif k.revoked_at is not null then
        code := 'key_revoked';
        details := jsonb_build_object('revoked_at', k.revoked_at);
      elsif k.expires_at is not null and k.expires_at <= now_ts then
        code := 'key_expired';
        details := jsonb_build_object('expired_at', k.expires_at);
      elsif k.version <> (p->>'policy_version')::integer then
        return jsonb_build_object('stale', true, 'policy_version', k.version);
      end if;

      -- Loop guard: identical calls of one key are serialised, so the count below is exact.
      if code is null and p->>'loop_limit' is not null then
        perform pg_advisory_xact_lock(hashtextextended('leash:loop:' || p_key_id || ':' || (p_row->>'args_hash'), 0));
        select count(*)::int into n from audit_log a
          where a.key_id = p_key_id and a.args_hash = p_row->>'args_hash' and a.decision = 'allowed'
            and a.ts > now_ts - make_interval(secs => (p->>'loop_seconds')::integer);
        if n >= (p->>'loop_limit')::integer then
          code := 'loop_detected';
          details := jsonb_build_object('identical_calls', n, 'limit', (p->>'loop_limit')::integer,
                                        'window_seconds', (p->>'loop_seconds')::integer);
        end if;
      end if;

      if code is null then
        for w in select value from jsonb_array_elements(p->'windows') loop
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
          'reason', code,
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

    -- Admission as one call in two transactions, so the shared window rows are locked only for as long as
    -- the statement that changes them, not through a WAL flush (calls of one key or policy would otherwise
    -- queue behind each other's fsync). 1: leash_admit_call, committed asynchronously (locks released at once).
    -- 2: the key re-checked under its shared lock (a revoke that committed in between undoes the admission),
    -- committed durably, which flushes the WAL of 1 as well. The caller calls the vendor only after both, so
    -- no vendor call happens without a durable audit row. A crash between them loses nothing that was acted on:
    -- 1 is either lost with its reservation, or durable as a pending row that reconcile settles.
    create procedure leash_admission(p jsonb, inout r jsonb default null) language plpgsql as $$
    declare
      k record;
      w jsonb;
      a record;
    begin
      perform set_config('synchronous_commit', 'off', true);
      r := leash_admit_call(p);
      commit;
      if coalesce((r->>'admitted')::boolean, false) then
        perform pg_advisory_xact_lock_shared(leash_key_lock_id(p->>'key_id'));
        -- A transaction that writes no WAL commits without waiting for the flush (even with an xid), so write one
        -- record: this commit then waits for the WAL to be flushed past it, and so past transaction 1's audit row.
        r := r || jsonb_build_object('durable_lsn', pg_logical_emit_message(true, 'leash.admitted', p->'row'->>'id')::text);
        select revoked_at, expires_at, secret_hash into k from vault_keys where id = p->>'key_id';
        -- Rotated (rotate takes the same lock exclusively), revoked or expired since transaction 1: undo it.
        if k.secret_hash is distinct from decode(p->>'secret_hash', 'hex')
           or k.revoked_at is not null or (k.expires_at is not null and k.expires_at <= clock_timestamp()) then
          select id, budget, reserved_micros into a from audit_log where id = (p->'row'->>'id')::uuid for update;
          for w in select value from jsonb_array_elements(a.budget) loop
            if w->>'kind' = 'usd_day' then
              update spend_windows set reserved_micros = reserved_micros - a.reserved_micros
                where scope = w->>'scope' and kind = 'usd_day' and window_start = (w->>'window_start')::timestamptz;
            else
              update spend_windows set requests = requests - 1
                where scope = w->>'scope' and kind = 'requests_hour' and window_start = (w->>'window_start')::timestamptz;
            end if;
          end loop;
          r := jsonb_build_object('admitted', false, 'ts', r->'ts', 'remaining_micros', null,
                 'durable_lsn', r->'durable_lsn',
                 'code', case when k.secret_hash is distinct from decode(p->>'secret_hash', 'hex') then 'key_invalid'
                              when k.revoked_at is not null then 'key_revoked' else 'key_expired' end,
                 'details', case when k.revoked_at is not null then jsonb_build_object('revoked_at', k.revoked_at)
                                 when k.expires_at is not null then jsonb_build_object('expired_at', k.expires_at)
                                 else '{}'::jsonb end);
          update audit_log set decision = 'denied', reason = r->>'code', outcome = 'none', reserved_micros = 0,
              usd_micros = 0, cost_status = 'none', budget = '[]',
              metadata = metadata || jsonb_build_object('denial', r->'details')
            where id = a.id;
          delete from audit_unsettled where id = a.id;
        end if;
      end if;
      commit;
    end $$;

    -- Record a refusal decided before admission (policy, input, facts) in one round trip. When the row names a
    -- key, the key is re-checked first: a revoked, expired or unknown key is what the row and the caller see, and
    -- a policy that moved on since the caller evaluated it returns {stale: true} with nothing written.
    -- p: {key_id?, secret_hash?, policy_version?, code, details, row}. Returns {code, details} or {stale, policy_version}.
    create function leash_record_denial(p jsonb) returns jsonb language plpgsql as $$
    declare
      k record;
      code text := p->>'code';
      details jsonb := coalesce(p->'details', '{}');
      now_ts timestamptz := clock_timestamp();
      p_row jsonb := p->'row';
    begin
      if p->>'secret_hash' is not null then
        select kk.secret_hash, kk.revoked_at, kk.expires_at, coalesce(kk.policy_version, pp.latest_version) as version
          into k
          from vault_keys kk join policies pp on pp.name = kk.policy
          where kk.id = p->>'key_id';
        if not found or k.secret_hash <> decode(p->>'secret_hash', 'hex') then
          code := 'key_invalid'; details := '{}';
          p_row := p_row || jsonb_build_object('agent', null, 'run_id', null, 'policy', null, 'policy_version', null);
        elsif k.revoked_at is not null then
          code := 'key_revoked'; details := jsonb_build_object('revoked_at', k.revoked_at);
        elsif k.expires_at is not null and k.expires_at <= now_ts then
          code := 'key_expired'; details := jsonb_build_object('expired_at', k.expires_at);
        elsif p->>'policy_version' is not null and k.version <> (p->>'policy_version')::integer then
          return jsonb_build_object('stale', true, 'policy_version', k.version);
        end if;
      end if;
      insert into audit_log
        select * from jsonb_populate_record(null::audit_log, p_row || jsonb_build_object(
          'ts', now_ts, 'decision', 'denied', 'reason', code, 'outcome', 'none',
          'reserved_micros', 0, 'cost_micros', 0, 'usd_micros', 0, 'cost_status', 'none', 'budget', '[]'::jsonb,
          'sandbox', coalesce((p_row->>'sandbox')::boolean, false),
          'metadata', coalesce(p_row->'metadata', '{}') || jsonb_build_object('denial', details)));
      return jsonb_build_object('code', code, 'details', details);
    end $$;

    -- Settle many calls in one statement (asynchronous commit: a lost settle leaves the row pending for
    -- reconcile). Items: {id, outcome, cost, cost_status, patch}. Window rows are changed once each, in the
    -- same order admission locks them (key scopes before policy scopes), so settles never deadlock admissions.
    create function leash_settle_batch(p_items jsonb) returns integer language plpgsql as $$
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
        if it->'patch'->>'vendor_object_id' is not null and r.operation not like 'GET %' and exists (
             select 1 from audit_log o where o.vendor = r.vendor and o.vendor_object_id = it->'patch'->>'vendor_object_id'
               and o.id <> r.id and o.operation not like 'GET %') then
          it := jsonb_set(it, '{patch}', (it->'patch') - 'vendor_object_id' || jsonb_build_object('metadata',
                  coalesce(it->'patch'->'metadata', '{}') || jsonb_build_object('vendor_object_id_conflict',
                  it->'patch'->>'vendor_object_id')));
        end if;
        for w in select value from jsonb_array_elements(r.budget) loop
          if w->>'kind' = 'usd_day' then
            dkey := (case when w->>'scope' like 'key:%' then '0' else '1' end) || '|' || (w->>'scope') || '|' || (w->>'window_start');
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

      for dkey in select key from jsonb_each(deltas) order by key loop
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
