// Frozen: less work per admitted call in the batch statements (0010's bodies otherwise, same results and lock order).
// leash_admit_batch writes its audit rows with one INSERT of named columns from jsonb_populate_record per call
// (0010 built a jsonb object per row, aggregated them and parsed the aggregate back, about half the insert's time)
// and its unsettled markers from that INSERT's RETURNING; leash_settle_batch decides ownership in the CTE it updates
// from (0010 joined two scans of the same CTE by id, a nested loop that grew with the square of the batch).
// It also (re-)creates the two lock helpers both functions call. 0009 gained them after its first version had been
// applied: a database migrated with that version has neither, and its batches would fail. (0009's first
// leash_admit_batch_each took the same locks inline, in the same order, so it needs no change.)
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    -- Every advisory lock the calls of a batch take, in the global order: key locks shared, in key id order (as
    -- revoke and rotate take them exclusively), then approval and loop-guard locks by id.
    create or replace function leash_lock_batch(p jsonb) returns void language plpgsql as $$
    begin
      perform pg_advisory_xact_lock_shared(leash_key_lock_id(s.k))
        from (select distinct x->>'key_id' as k from jsonb_array_elements(p) x order by 1) s;
      perform pg_advisory_xact_lock(s.l)
        from (select distinct on (s0.class, s0.l) s0.l, s0.class from (
                select 0 as class, hashtextextended('leash:approval:' || (x->>'key_id') || ':' || (x->'row'->>'args_hash'), 0) as l
                  from jsonb_array_elements(p) x
                  where jsonb_typeof(x->'approval') = 'object' and x->'row'->>'args_hash' is not null
                union all
                select 1, hashtextextended('leash:loop:' || (x->>'key_id') || ':' || (x->'row'->>'args_hash'), 0)
                  from jsonb_array_elements(p) x where x->>'loop_limit' is not null) s0
              order by s0.class, s0.l) s;
    end $$;

    -- One window row, created when missing, locked.
    create or replace function leash_lock_window(p_scope text, p_kind text, p_start timestamptz) returns void
      language plpgsql as $$
    begin
      insert into spend_windows (scope, kind, window_start) values (p_scope, p_kind, p_start)
        on conflict (scope, kind, window_start) do nothing;
      perform 1 from spend_windows s
        where s.scope = p_scope and s.kind = p_kind and s.window_start = p_start for update;
    end $$;

    create or replace function leash_admit_batch(p jsonb) returns jsonb language plpgsql as $$
    declare
      c_code text[];
      c_details jsonb[];
      c_ts timestamptz[];
      c_version integer[];
      w record;
      back record;
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
      -- A batch holds up every admission of its process: a lock that is not granted in 10 s (a window row held by
      -- someone's open transaction, say) fails the batch, and its calls are retried one by one, each waiting alone.
      perform set_config('lock_timeout', '10s', true);
      if jsonb_path_exists(p, '$[*].approval ? (@.type() == "object")') then
        return leash_admit_batch_each(p);
      end if;

      perform leash_lock_batch(p);

      -- Each call's key and loop-guard decision. The loop guard counts identical allowed calls already committed
      -- plus those admitted before this one in the batch (with d committed and limit L, the first L - d pass).
      with it as (
        select t.n::integer as n, t.x, clock_timestamp() as ts
          from jsonb_array_elements(p) with ordinality as t(x, n)
      ), keyed as (
        select it.n, it.x, it.ts, coalesce(kk.policy_version, kk.latest_version) as version,
               case when kk.id is null or encode(kk.secret_hash, 'hex') <> lower(it.x->>'secret_hash') then 'key_invalid'
                    when kk.revoked_at is not null then 'key_revoked'
                    when kk.expires_at is not null and kk.expires_at <= it.ts then 'key_expired'
                    when coalesce(kk.policy_version, kk.latest_version) <> (it.x->>'policy_version')::integer then 'stale'
               end as code,
               kk.revoked_at, kk.expires_at
          from it
          -- One index lookup per call (LIMIT keeps the planner from hashing the whole key table per batch).
          left join lateral (
            select k0.id, k0.secret_hash, k0.revoked_at, k0.expires_at, k0.policy_version, pp.latest_version
              from vault_keys k0 left join policies pp on pp.name = k0.policy
              where k0.id = it.x->>'key_id' limit 1) kk on true
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
      -- order. Window rows only refused calls name are locked all the same (so the rows this takes are always a
      -- prefix, in that order, of what leash_admit_batch_each takes). If one would pass its cap, give back what
      -- was taken and decide the calls one by one.
      for w in
        select g.* from (
          select wj->>'scope' as scope, wj->>'kind' as kind, (wj->>'window_start')::timestamptz as ws,
                 min((wj->>'cap')::bigint) filter (where c_code[t.n::integer] is null) as cap,
                 max((wj->>'cap')::bigint) filter (where c_code[t.n::integer] is null) as cap_max,
                 coalesce(sum((t.x->>'cost')::bigint) filter (where c_code[t.n::integer] is null), 0) as total,
                 (count(*) filter (where c_code[t.n::integer] is null))::integer as calls
            from jsonb_array_elements(p) with ordinality as t(x, n), jsonb_array_elements(t.x->'windows') wj
            group by 1, 2, 3) g
        order by leash_window_order(g.scope, g.kind, g.ws) collate "C"
      loop
        if w.calls = 0 then
          perform leash_lock_window(w.scope, w.kind, w.ws);
          continue;
        end if;
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
          for back in select value->>'scope' as scope, value->>'kind' as kind,
                             (value->>'window_start')::timestamptz as ws,
                             (value->>'total')::bigint as total, (value->>'calls')::integer as calls
                        from jsonb_array_elements(applied)
          loop
            if back.kind = 'usd_day' then
              update spend_windows set reserved_micros = reserved_micros - back.total
                where scope = back.scope and kind = 'usd_day' and window_start = back.ws;
            else
              update spend_windows set requests = requests - back.calls
                where scope = back.scope and kind = 'requests_hour' and window_start = back.ws;
            end if;
          end loop;
          return leash_admit_batch_each(p);
        end if;
        applied := applied || jsonb_build_array(jsonb_build_object('scope', w.scope, 'kind', w.kind,
                     'window_start', w.ws, 'total', w.total, 'calls', w.calls, 'left', left_after));
      end loop;

      -- Every audit row in one statement (a refused call's row names no key holder when the key was not valid).
      with ins as (
        insert into audit_log (id, ts, key_id, agent, run_id, policy, policy_version, tool, vendor, operation, account,
                               decision, reason, outcome, reserved_micros, cost_micros, usd_micros, cost_status, budget,
                               amount, currency, request, args_hash, sandbox, door, metadata)
          select r.id, c_ts[t.n::integer], r.key_id,
                 case when c.code = 'key_invalid' then null else r.agent end,
                 case when c.code = 'key_invalid' then null else r.run_id end,
                 case when c.code = 'key_invalid' then null else r.policy end,
                 case when c.code = 'key_invalid' then null else r.policy_version end,
                 r.tool, r.vendor, r.operation, r.account,
                 case when c.code is null then 'allowed' else 'denied' end,
                 c.code,
                 case when c.code is null then 'pending' else 'none' end,
                 case when c.code is null then c.cost else 0 end,
                 0,
                 case when c.code is null then c.cost else 0 end,
                 case when c.code is null and c.cost > 0 then 'estimated' else 'none' end,
                 case when c.code is null then coalesce(t.x->'windows', '[]') else '[]' end,
                 r.amount, r.currency, r.request, r.args_hash, coalesce(r.sandbox, false), coalesce(r.door, 'mcp'),
                 coalesce(r.metadata, '{}')
                   || case when c.code is null then '{}'::jsonb else jsonb_build_object('denial', c_details[t.n::integer]) end
            from jsonb_array_elements(p) with ordinality as t(x, n)
            cross join lateral (select c_code[t.n::integer] as code, (t.x->>'cost')::bigint as cost) c
            cross join lateral jsonb_populate_record(null::audit_log, t.x->'row') r
            where c.code is distinct from 'stale'
            order by t.n
          returning id, ts, decision)
      insert into audit_unsettled (id, ts) select ins.id, ins.ts from ins where ins.decision = 'allowed';
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
  `.execute(db);
}
