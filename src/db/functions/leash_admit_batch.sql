-- Admit a batch of calls in one statement and one transaction, each decided as it would be alone
-- (leash_admit_call), in order, against what the calls before it left. p: a JSON array of leash_admit_call
-- payloads {key_id, secret_hash (hex), policy_version, cost, windows, row, loop_limit, loop_seconds, approval,
-- pending}. Returns their results in the same order: {admitted, code, details, ts, remaining_micros[, held]
-- [, durable_lsn]}, or {stale: true, policy_version} with nothing written for that call. The caller commits
-- synchronously, so window rows are held through one WAL flush per batch, and calls no vendor before that commit
-- returns.
--
-- The usual case in a few set-based statements: the locks in the global order (keys shared, as revoke and rotate
-- take them exclusively; then loop guards), every call's key, same-logical-call and loop-guard decision in one
-- query, one conditional update per window row for all calls still in (in leash_window_order), every audit row in
-- one insert. A batch with a call held for a person, a call a policy's shadow version allows (its caps are measured
-- by leash_admit_call), calls that would pass a cap together, or calls that could take a
-- tripwire over its line (or a wire on distinct recipients) is decided one call at a time by leash_admit_batch_each
-- instead (the reservations taken here are given back first): a wire's figure then counts the calls before it in the
-- batch exactly as it counts committed ones. A paused key, run, agent or policy refuses its calls here too
-- (key_paused). Rows are looked up
-- by primary key, one index lookup per call, whatever the planner guesses of a batch's size (jsonb): a hash join
-- would read the whole table once per batch.
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
  if jsonb_path_exists(p, '$[*].approval ? (@.type() == "object")')
     or jsonb_path_exists(p, '$[*].shadow ? (@.type() == "object")')
     or jsonb_path_exists(p, '$[*].tripwires[*] ? (@.metric == "distinct_recipients_per_hour")') then
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
                when kk.pause is not null and not coalesce((it.x->>'pause_exempt')::boolean, false)
                  then 'key_paused'
           end as code,
           kk.revoked_at, kk.expires_at, kk.pause
      from it
      -- One index lookup per call (LIMIT keeps the planner from hashing the whole key table per batch).
      left join lateral (
        select k0.id, k0.secret_hash, k0.revoked_at, k0.expires_at, k0.policy_version, pp.latest_version,
               leash_active_pause(k0.id, k0.run_id, k0.agent, k0.policy) as pause
          from vault_keys k0 left join policies pp on pp.name = k0.policy
          where k0.id = it.x->>'key_id' limit 1) kk on true
  ), pended as (
    -- The same logical call, as leash_admit_call decides it: an identical call of this key with an
    -- unknown outcome in the window makes this one outcome_pending, unless it carries that call's idempotency key
    -- to a vendor that dedupes by key.
    select keyed.n, keyed.x, keyed.ts, keyed.version, keyed.revoked_at, keyed.expires_at, keyed.pause,
           coalesce(keyed.code, case when pend.id is not null then 'outcome_pending' end) as code,
           case when keyed.code is null and pend.id is not null then
             jsonb_build_object('audit_id', pend.id, 'since', pend.ts,
                                'window_seconds', (keyed.x->'pending'->>'seconds')::integer) end as pend
      from keyed
      left join lateral (
        select a.id, a.ts from audit_log a
          where keyed.code is null and jsonb_typeof(keyed.x->'pending') = 'object'
            and a.key_id = keyed.x->>'key_id' and a.args_hash = keyed.x->'row'->>'args_hash'
            and a.ts > keyed.ts - make_interval(secs => (keyed.x->'pending'->>'seconds')::integer)
            and a.decision = 'allowed' and a.outcome = 'unknown'
            and not (coalesce((keyed.x->'pending'->>'same_key')::boolean, false)
                     and coalesce(a.metadata->>'idempotency_key'
                                     = keyed.x->'row'->'metadata'->>'idempotency_key', false))
          order by a.ts, a.id
          limit 1) pend on true
  ), looped as (
    select pended.*,
           case when code is null and x->>'loop_limit' is not null then
             (select count(*)::integer from audit_log al
               where al.key_id = pended.x->>'key_id' and al.args_hash = pended.x->'row'->>'args_hash'
                 and al.decision = 'allowed'
                 and al.ts > pended.ts - make_interval(secs => (pended.x->>'loop_seconds')::integer))
           end as d,
           row_number() over (partition by code is null and x->>'loop_limit' is not null, x->>'key_id',
                              x->'row'->>'args_hash' order by n) as r
      from pended
  ), decided as (
    select n, ts, version, revoked_at, expires_at, pause, x, pend,
           case when d is not null then d + least(r - 1, greatest((x->>'loop_limit')::integer - d, 0)) end as seen,
           code
      from looped
  )
  select array_agg(case when code is null and seen >= (x->>'loop_limit')::integer then 'loop_detected' else code end
                   order by n),
         array_agg(case when code is null and seen >= (x->>'loop_limit')::integer then
                          jsonb_build_object('identical_calls', seen, 'limit', (x->>'loop_limit')::integer,
                                             'window_seconds', (x->>'loop_seconds')::integer)
                        when code = 'outcome_pending' then pend
                        when code = 'key_revoked' then jsonb_build_object('revoked_at', revoked_at)
                        when code = 'key_expired' then jsonb_build_object('expired_at', expires_at)
                        when code = 'key_paused' then pause
                        else '{}'::jsonb end
                   order by n),
         array_agg(ts order by n),
         array_agg(version order by n)
    into c_code, c_details, c_ts, c_version
    from decided;

  -- Tripwires (their scopes' locks are held since leash_lock_batch, so the figures below are exact): when no call
  -- could take a wire over its line even if every call still in were admitted — each wire's figure before the batch
  -- (its window taken from the batch's first call, so it may count a little more) plus all the batch's calls its scope
  -- counts — they are measured together here and marked below. Otherwise the calls are decided one by one, each
  -- against the calls before it (leash_admit_batch_each), as a wire that trips, alerts or shadows needs.
  if jsonb_path_exists(p, '$[*].tripwires[*]') then
    if exists (
      with cw as (
        select distinct t.n::integer as n, (wj->>'kind') || ':' || (wj->>'id') as s
          from jsonb_array_elements(p) with ordinality as t(x, n),
               jsonb_array_elements(case when jsonb_typeof(t.x->'tripwires') = 'array' then t.x->'tripwires'
                                         else '[]' end) wj
      ), contrib as (
        select cw.s, count(*) filter (where c_code[cw.n] is null) as calls,
               coalesce(sum((p->(cw.n - 1)->>'cost')::bigint) filter (where c_code[cw.n] is null), 0) as usd,
               count(*) filter (where c_code[cw.n] in ('outcome_pending', 'loop_detected')) as denials
          from cw group by cw.s
      ), wires as (
        select distinct (wj->>'kind') || ':' || (wj->>'id') as s, wj->>'kind' as kind, wj->>'id' as id,
               wj->>'metric' as metric, (wj->>'limit')::bigint as lim, (wj->>'seconds')::integer as secs
          from jsonb_array_elements(p) t(x),
               jsonb_array_elements(case when jsonb_typeof(t.x->'tripwires') = 'array' then t.x->'tripwires'
                                         else '[]' end) wj
      )
      select 1 from wires
        join contrib using (s)
        left join lateral (
          select m.calls, m.add_calls, m.usd_micros, m.add_usd, m.denials, m.add_denials from tripwire_marks m
            where m.scope = wires.s order by m.seq desc limit 1) h on true
        left join lateral (
          select m.calls, m.usd_micros, m.denials from tripwire_marks m
            where m.scope = wires.s
              and m.ts > greatest(c_ts[1] - make_interval(secs => wires.secs),
                                  coalesce((select max(z.resumed_at) from pauses z
                                             where z.scope_kind = wires.kind and z.scope = wires.id
                                               and z.resumed_at is not null), '-infinity'))
            order by m.ts, m.seq limit 1) b on true
        where case wires.metric
                when 'calls_per_minute' then contrib.calls > 0
                  and coalesce(h.calls + h.add_calls - b.calls, 0) + contrib.calls > wires.lim
                when 'spend_usd_per_10m' then contrib.calls > 0
                  and coalesce(h.usd_micros + h.add_usd - b.usd_micros, 0) + contrib.usd > wires.lim
                else contrib.denials > 0
                  and coalesce(h.denials + h.add_denials - b.denials, 0) + contrib.denials > wires.lim end
    ) then
      return leash_admit_batch_each(p);
    end if;
  end if;

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

  -- Each measured call in its scopes' marks, in order, with the running totals (as leash_tripwires writes one), and
  -- every 256 marks of a scope, its marks older than the longest window pruned.
  if jsonb_path_exists(p, '$[*].tripwires[*]') then
    with cw as (
      select distinct t.n::integer as n, (wj->>'kind') || ':' || (wj->>'id') as s
        from jsonb_array_elements(p) with ordinality as t(x, n),
             jsonb_array_elements(case when jsonb_typeof(t.x->'tripwires') = 'array' then t.x->'tripwires'
                                       else '[]' end) wj
        where c_code[t.n::integer] is null or c_code[t.n::integer] in ('outcome_pending', 'loop_detected')
    ), d as (
      select cw.s, cw.n, c_ts[cw.n] as ts,
             case when c_code[cw.n] is null then 1 else 0 end as add_calls,
             case when c_code[cw.n] is null then (p->(cw.n - 1)->>'cost')::bigint else 0 end as add_usd,
             case when c_code[cw.n] is null then 0 else 1 end as add_denials
        from cw
    ), heads as (
      select x.s, coalesce(h.seq, 0) as seq0, coalesce(h.calls + h.add_calls, 0) as calls0,
             coalesce(h.usd_micros + h.add_usd, 0) as usd0, coalesce(h.denials + h.add_denials, 0) as denials0
        from (select distinct s from cw) x
        left join lateral (
          select m.* from tripwire_marks m where m.scope = x.s order by m.seq desc limit 1) h on true
    ), marked as (
      insert into tripwire_marks (scope, seq, ts, calls, usd_micros, denials, add_calls, add_usd, add_denials)
        select d.s, heads.seq0 + row_number() over r, d.ts,
               heads.calls0 + sum(d.add_calls) over r - d.add_calls,
               heads.usd0 + sum(d.add_usd) over r - d.add_usd,
               heads.denials0 + sum(d.add_denials) over r - d.add_denials,
               d.add_calls, d.add_usd, d.add_denials
          from d join heads using (s)
          window r as (partition by d.s order by d.n rows between unbounded preceding and current row)
        returning scope, seq)
    delete from tripwire_marks m
      using (select scope, min(seq) as lo, max(seq) as hi from marked group by scope) x
      where m.scope = x.scope and x.hi / 256 > (x.lo - 1) / 256 and m.ts < c_ts[1] - interval '3700 seconds';
  end if;
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
