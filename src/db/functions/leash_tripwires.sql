-- Measures one call against its policy's tripwires. The caller holds the locks of the wires' scopes (taken with
-- leash_lock_tripwires or leash_lock_batch, before any window row), so the calls of a scope are measured one after
-- another, on every replica, and the figure is exact.
-- p: {wires, side, cost, recipients, now}. wires: the payload's `tripwires`, [{wire, metric, limit, seconds, per, kind,
-- id, then, mode, policy}]. side: 'allowed' (the call is about to be admitted; `cost` its admitted micro-USD,
-- `recipients` who it reaches) or 'denied' (it is refused, with a code that counts as a denial). now: the call's time.
--
-- A wire's figure is what its scope did in the last `seconds`, counting only what came after the scope's last resume,
-- this call included: allowed calls, their admitted micro-USD, denials, or distinct recipients. Calls, spend and
-- denials come from the scope's marks (running totals, one mark per call: the latest mark less the first mark inside
-- the window, two index probes however busy the scope); recipients from when each was last reached. Only the wires of
-- the call's side are measured (denials_per_minute on a denial, the others on an admission). A figure over the limit:
--   enforce + pause|revoke: trips. The scope gets an active pause, or its keys are revoked and their open approval
--     requests cancelled (as an operator's revoke does), in the caller's transaction; later wires are not measured;
--   enforce + alert, or warn: an alert, once per window per wire and scope (tripwire_alerts);
--   shadow: {wire, figure, limit, would[, shadow_version]} for the audit row, nothing else.
-- Unless an admission tripped (that call is refused, so it is not counted), the call is added to each scope's marks,
-- and an admitted call's recipients to the scopes some wire counts recipients of. Marks and recipients older than the
-- longest window (an hour) are pruned every 256 marks of a scope.
-- Returns {trip (details, or null), alerts ([…] for the caller to raise, the trip included), shadow ([…]),
-- cancelled (approval request ids a revoke closed)}.
create or replace function leash_tripwires(p jsonb) returns jsonb language plpgsql as $$
declare
  hit record;
  w jsonb;
  now_ts timestamptz := (p->>'now')::timestamptz;
  side text := p->>'side';
  cost bigint := coalesce((p->>'cost')::bigint, 0);
  recips text[] := array(select distinct jsonb_array_elements_text(coalesce(p->'recipients', '[]')));
  s text;
  since timestamptz;
  figure bigint;
  lim bigint;
  secs integer;
  n bigint;
  trip jsonb;
  marker jsonb;
  alerts jsonb := '[]';
  shadow jsonb := '[]';
  cancelled jsonb := '[]';
  revoked text[];
  prune text[];
begin
  -- Every wire of this side over its line, in the order written, with its figure: one statement for all of them (the
  -- usual answer is none). What the scope did in the window, after its last resume: its totals after the latest mark
  -- less its totals before the first mark in the window; then this call. Recipients are counted by the second query.
  for hit in
    select t.value as w, t.n, f.figure
      from jsonb_array_elements(p->'wires') with ordinality as t(value, n)
      left join lateral (
        select m.calls, m.add_calls, m.usd_micros, m.add_usd, m.denials, m.add_denials from tripwire_marks m
          where m.scope = (t.value->>'kind') || ':' || (t.value->>'id') order by m.seq desc limit 1) h on true
      left join lateral (
        select m.calls, m.usd_micros, m.denials from tripwire_marks m
          where m.scope = (t.value->>'kind') || ':' || (t.value->>'id')
            and m.ts > greatest(now_ts - make_interval(secs => (t.value->>'seconds')::integer),
                                coalesce((select max(z.resumed_at) from pauses z
                                           where z.scope_kind = t.value->>'kind' and z.scope = t.value->>'id'
                                             and z.resumed_at is not null), '-infinity'))
          order by m.ts, m.seq limit 1) b on true
      cross join lateral (
        select case t.value->>'metric'
                 when 'calls_per_minute' then coalesce(h.calls + h.add_calls - b.calls, 0) + 1
                 when 'spend_usd_per_10m' then coalesce(h.usd_micros + h.add_usd - b.usd_micros, 0) + cost
                 else coalesce(h.denials + h.add_denials - b.denials, 0) + 1 end as figure) f
      where (t.value->>'metric' = 'denials_per_minute') = (side = 'denied')
        and t.value->>'metric' <> 'distinct_recipients_per_hour'
        and f.figure > (t.value->>'limit')::bigint
    union all
    select t.value, t.n, null
      from jsonb_array_elements(p->'wires') with ordinality as t(value, n)
      where side = 'allowed' and t.value->>'metric' = 'distinct_recipients_per_hour'
    order by 2
  loop
    w := hit.w;
    s := (w->>'kind') || ':' || (w->>'id');
    lim := (w->>'limit')::bigint;
    secs := (w->>'seconds')::integer;
    figure := hit.figure;
    if w->>'metric' = 'distinct_recipients_per_hour' then
      since := greatest(now_ts - make_interval(secs => secs),
                        coalesce((select max(z.resumed_at) from pauses z
                                    where z.scope_kind = w->>'kind' and z.scope = w->>'id'
                                      and z.resumed_at is not null),
                                 '-infinity'));
      -- Recipients reached in the window (read up to one past the line), and this call's that were not.
      select count(*) into n from (
        select 1 from tripwire_recipients r where r.scope = s and r.last_at > since
          order by r.last_at desc limit lim + 1) x;
      -- Over the line: the exact figure, unless it is only for an alert already raised in this window.
      if n > lim and not ((w->>'mode' = 'warn' or (w->>'mode' = 'enforce' and w->>'then' = 'alert'))
                          and exists (select 1 from tripwire_alerts t
                                       where t.policy = w->>'policy' and t.wire = w->>'wire' and t.scope = s
                                         and t.alerted_at > now_ts - make_interval(secs => secs))) then
        select count(*) into n from tripwire_recipients r where r.scope = s and r.last_at > since;
      end if;
      figure := n + (select count(*) from unnest(recips) u(rc)
                      where not exists (select 1 from tripwire_recipients r
                                         where r.scope = s and r.recipient = u.rc and r.last_at > since));
      continue when figure <= lim;
    end if;
    marker := jsonb_build_object('wire', w->>'wire', 'metric', w->>'metric', 'figure', figure, 'limit', lim,
                                 'window_seconds', secs, 'per', w->>'per', 'scope_kind', w->>'kind',
                                 'scope', w->>'id', 'policy', w->>'policy', 'mode', w->>'mode');
    if w->>'mode' = 'shadow' then
      -- A wire of the policy's shadow version (shadow_version) is told apart from the enforced version's own.
      shadow := shadow || jsonb_build_array(jsonb_build_object('wire', w->>'wire', 'figure', figure, 'limit', lim,
                                                               'would', w->>'then')
                                            || case when w ? 'shadow_version'
                                                    then jsonb_build_object('shadow_version', w->'shadow_version')
                                                    else '{}' end);
    elsif w->>'mode' = 'warn' or w->>'then' = 'alert' then
      insert into tripwire_alerts as t (policy, wire, scope, alerted_at, figure)
        values (w->>'policy', w->>'wire', s, now_ts, figure)
        on conflict (policy, wire, scope) do update set alerted_at = excluded.alerted_at, figure = excluded.figure
          where t.alerted_at <= now_ts - make_interval(secs => secs);
      if found then
        alerts := alerts || jsonb_build_array(marker || jsonb_build_object('action', 'alert', 'would', w->>'then'));
      end if;
    else
      trip := marker || jsonb_build_object('action', w->>'then');
      if w->>'then' = 'revoke' then
        -- The scope's keys, in id order (two revokes of overlapping sets never wait on each other in a circle).
        with k as (
          select v.id from vault_keys v
            where v.revoked_at is null
              and ((w->>'kind' = 'key' and v.id = w->>'id') or (w->>'kind' = 'run' and v.run_id = w->>'id')
                   or (w->>'kind' = 'agent' and v.agent = w->>'id') or (w->>'kind' = 'policy' and v.policy = w->>'id'))
            order by v.id
            for update)
        , r as (
          update vault_keys v set revoked_at = clock_timestamp(),
              revoked_reason = format('tripwire %s of policy %s: %s %s over %s in %ss', w->>'wire', w->>'policy',
                                      figure, w->>'metric', lim, secs)
            from k where v.id = k.id
            returning v.id)
        select coalesce(array_agg(r.id order by r.id), '{}') into revoked from r;
        -- Their open approval requests close, as an operator's revoke closes them (approvals/store.ts cancelForKeys);
        -- one an admission in flight holds is left to it: that admission waits for this scope's lock, then finds the
        -- key revoked.
        with c as (
          update approvals set status = 'cancelled', cancelled_at = clock_timestamp(), cancel_reason = 'key_revoked',
              link_nonce_hash = null
            where id in (
              select id from approvals
                where key_id = any(revoked) and status in ('pending', 'approved') and expires_at > clock_timestamp()
                order by id
                for update skip locked)
            returning id, key_id, args_hash, cancelled_at, cancel_reason
        ), stamped as (
          update audit_log a set metadata = a.metadata || jsonb_build_object('approval',
                coalesce(a.metadata->'approval', '{}') || jsonb_build_object(
                  'status', 'cancelled', 'cancelled_at', c.cancelled_at, 'reason', c.cancel_reason))
            from c
            where a.key_id = c.key_id and a.args_hash = c.args_hash and a.decision = 'held'
              and a.metadata->'approval'->>'id' = c.id::text
        )
        select coalesce(jsonb_agg(c.id order by c.id), '[]') into cancelled from c;
        trip := trip || jsonb_build_object('revoked_keys', cardinality(revoked));
      else
        -- An operator may have paused it meanwhile: one active pause per scope, the first stays.
        insert into pauses (scope_kind, scope, wire, policy, details, paused_at, paused_by)
          values (w->>'kind', w->>'id', w->>'wire', w->>'policy', trip, now_ts, 'tripwire')
          on conflict (scope_kind, scope) where resumed_at is null do nothing;
      end if;
      alerts := alerts || jsonb_build_array(trip);
      exit;
    end if;
  end loop;

  if not (side = 'allowed' and trip is not null) then
    -- A mark in each scope, with the scope's running totals (its latest mark's, plus what that mark added); every 256
    -- marks of a scope, its marks and recipients older than the longest window go (an index range each).
    with sc as (
      select distinct (w2->>'kind') || ':' || (w2->>'id') as s from jsonb_array_elements(p->'wires') w2
    ), marked as (
      insert into tripwire_marks (scope, seq, ts, calls, usd_micros, denials, add_calls, add_usd, add_denials)
        select sc.s, coalesce(h.seq, 0) + 1, now_ts, coalesce(h.calls + h.add_calls, 0),
               coalesce(h.usd_micros + h.add_usd, 0), coalesce(h.denials + h.add_denials, 0),
               case when side = 'allowed' then 1 else 0 end, case when side = 'allowed' then cost else 0 end,
               case when side = 'denied' then 1 else 0 end
          from sc
          left join lateral (
            select m.* from tripwire_marks m where m.scope = sc.s order by m.seq desc limit 1) h on true
        returning scope, seq
    )
    select array_agg(marked.scope) filter (where marked.seq % 256 = 0) into prune from marked;
    if prune is not null then
      delete from tripwire_marks m where m.scope = any(prune) and m.ts < now_ts - interval '3700 seconds';
      delete from tripwire_recipients r where r.scope = any(prune) and r.last_at < now_ts - interval '3700 seconds';
    end if;
    if side = 'allowed' and cardinality(recips) > 0 then
      insert into tripwire_recipients as t (scope, recipient, last_at)
        select distinct (w2->>'kind') || ':' || (w2->>'id'), u.rc, now_ts
          from jsonb_array_elements(p->'wires') w2, unnest(recips) u(rc)
          where w2->>'metric' = 'distinct_recipients_per_hour'
        on conflict (scope, recipient) do update set last_at = excluded.last_at;
    end if;
  end if;
  return jsonb_build_object('trip', trip, 'alerts', alerts, 'shadow', shadow, 'cancelled', cancelled);
end $$;
