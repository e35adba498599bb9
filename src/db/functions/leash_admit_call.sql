-- Admit one call in one statement: the key re-checked under its shared lock, then pauses (key_paused), the same
-- logical call (outcome_pending), approvals, the loop guard, a reservation in every window (key scope first), the
-- policy's tripwires and the audit row.
-- p: {key_id, secret_hash (hex), policy_version, cost, windows, row, loop_limit, loop_seconds, approval, pending,
-- tripwires, recipients, shadow}. Returns {admitted, code, details, ts, remaining_micros[, held][, tripwires]
-- [, approvals_cancelled][, shadow]}, or {stale: true, policy_version} (no row written) when the key's policy moved on since the
-- caller evaluated it. `tripwires`: the wires that tripped or alerted, for the caller to raise alerts about;
-- `approvals_cancelled`: the approval requests a wire's revoke closed.
-- A call a rule holds for a person is an audit row `held` plus an approval request bound to the key and the digest
-- of its exact arguments; an approved request is consumed in the same statement that reserves the budget.
-- `approval`, `pending` ({seconds, same_key}), `tripwires` and `recipients` are optional: a caller that does not send
-- them (a replica on an earlier version) keeps its behaviour, except that a paused key, run, agent or policy refuses
-- its calls too. leash_admission and leash_admit_batch_each admit through this function.
-- Tripwires (leash_tripwires): their scopes' locks are taken after the loop guard's and before the window rows (the
-- global order); a call admitted by every window is then measured, and one that would take a wire over its line is
-- refused tripwire_tripped, its reservations given back, and its scope paused (or its keys revoked) in this
-- transaction. A refusal that counts as a denial is measured against denials_per_minute the same way.
-- Shadow policies: the row's metadata.shadow is the shadow version's decision on the policy's rules (made by the
-- caller). When that allows the call, `shadow` ({windows, cost}) are the shadow's caps, measured here from the same
-- window rows after the enforced reservations (before this call's own), and the shadow's wires come with
-- `tripwires` as shadow-mode wires tagged shadow_version: a cap the call would pass, or a wire it would trip, makes
-- the shadow's decision a refusal. Nothing is reserved, paused or alerted for a shadow.
create or replace function leash_admit_call(p jsonb) returns jsonb language plpgsql as $$
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
  appr approvals%rowtype;
  consume uuid;
  held_id uuid;
  held_expires timestamptz;
  p_hash text := p_row->>'args_hash';
  pend record;
  p_wires jsonb := case when jsonb_typeof(p->'tripwires') = 'array' then p->'tripwires' else '[]' end;
  kr record;
  t jsonb;
  shadow jsonb := '[]';
  raised jsonb := '[]';
  cancelled jsonb := '[]';
  sh jsonb := p_row->'metadata'->'shadow';
  used bigint;
  shadow_wire text;
begin
  perform pg_advisory_xact_lock_shared(leash_key_lock_id(p_key_id));
  select kk.secret_hash, kk.revoked_at, kk.expires_at, coalesce(kk.policy_version, pp.latest_version) as version,
         leash_active_pause(kk.id, kk.run_id, kk.agent, kk.policy) as pause
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
  elsif k.pause is not null and not coalesce((p->>'pause_exempt')::boolean, false) then
    -- The key, its run, its agent or its policy is paused (by a tripwire or an operator) until someone resumes it.
    code := 'key_paused';
    details := k.pause;
  end if;

  -- The same logical call: while an identical call of this key (same arguments digest) admitted in
  -- the last pending.seconds has an unknown outcome, this one is refused outcome_pending, naming it, unless it
  -- carries that call's idempotency key to a vendor that dedupes by key (pending.same_key): the vendor then
  -- answers with the first call's outcome. Before approvals: no person is asked about a call that may be done.
  if code is null and jsonb_typeof(p->'pending') = 'object' and p_hash is not null then
    select a.id, a.ts into pend from audit_log a
      where a.key_id = p_key_id and a.args_hash = p_hash
        and a.ts > now_ts - make_interval(secs => (p->'pending'->>'seconds')::integer)
        and a.decision = 'allowed' and a.outcome = 'unknown'
        and not (coalesce((p->'pending'->>'same_key')::boolean, false)
                 and coalesce(a.metadata->>'idempotency_key' = p_row->'metadata'->>'idempotency_key', false))
      order by a.ts, a.id
      limit 1;
    if found then
      code := 'outcome_pending';
      details := jsonb_build_object('audit_id', pend.id, 'since', pend.ts,
                                    'window_seconds', (p->'pending'->>'seconds')::integer);
    end if;
  end if;

  -- Approval: this call needs a person (evaluate said so). Calls of one key with one digest are serialised,
  -- so the latest request for the digest decides: approved and unexpired → admit (and consume it below, only
  -- if every reservation succeeds); pending → held again; denied → refused while it lasts; past its expiry →
  -- approval_expired once; otherwise (none, used, or closed) a new request → held.
  if code is null and jsonb_typeof(p->'approval') = 'object' then
    if p_hash is null then
      raise exception 'approval needs the arguments digest';
    end if;
    perform pg_advisory_xact_lock(hashtextextended('leash:approval:' || p_key_id || ':' || p_hash, 0));
    select * into appr from approvals a
      where a.key_id = p_key_id and a.args_hash = p_hash
      order by a.created_at desc limit 1
      for update;
    if found and appr.status = 'approved' and appr.expires_at > now_ts then
      consume := appr.id;
    elsif found and appr.status = 'pending' and appr.expires_at > now_ts then
      held_id := appr.id;
      held_expires := appr.expires_at;
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
      held_id := (p_row->>'id')::uuid;  -- the held audit row's id names its request too
      held_expires := now_ts + make_interval(secs => (p->'approval'->>'expires_seconds')::integer);
      insert into approvals (id, key_id, agent, run_id, policy, policy_version, tool, operation, door,
                             args_hash, request, usd_micros, amount, currency, status, created_at, expires_at,
                             held_audit_id)
        values (held_id, p_key_id, p_row->>'agent', p_row->>'run_id', p_row->>'policy',
                (p_row->>'policy_version')::integer, p_row->>'tool', p_row->>'operation',
                coalesce(p_row->>'door', 'mcp'), p_hash, p_row->'request',
                coalesce((p->'approval'->>'usd_micros')::bigint, 0), (p_row->>'amount')::bigint,
                p_row->>'currency', 'pending', now_ts, held_expires, (p_row->>'id')::uuid);
    end if;
  end if;

  if held_id is not null then
    insert into audit_log
      select * from jsonb_populate_record(null::audit_log, p_row || jsonb_build_object(
        'ts', now_ts, 'decision', 'held', 'reason', 'approval_required', 'outcome', 'none',
        'reserved_micros', 0, 'cost_micros', 0, 'usd_micros', 0, 'cost_status', 'none', 'budget', '[]'::jsonb,
        'sandbox', coalesce((p_row->>'sandbox')::boolean, false),
        'metadata', coalesce(p_row->'metadata', '{}') || jsonb_build_object('approval',
                      jsonb_build_object('id', held_id, 'status', 'pending', 'expires_at', held_expires))));
    return jsonb_build_object('admitted', false, 'held', true, 'code', 'approval_required',
                              'details', jsonb_build_object('approval_id', held_id, 'expires_at', held_expires),
                              'ts', now_ts, 'remaining_micros', null);
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

  -- Tripwires: the scopes' locks, then the key and its pauses read again, since a call that held them before this one
  -- may have paused the scope or revoked the key. From here on, this call's time is after that call's.
  if jsonb_array_length(p_wires) > 0
     and code is distinct from 'key_invalid' and code is distinct from 'key_revoked'
     and code is distinct from 'key_expired' and code is distinct from 'key_paused' then
    perform leash_lock_tripwires(p_wires);
    now_ts := clock_timestamp();
    select kk.revoked_at, leash_active_pause(kk.id, kk.run_id, kk.agent, kk.policy) as pause into kr
      from vault_keys kk where kk.id = p_key_id;
    if kr.revoked_at is not null then
      code := 'key_revoked';
      details := jsonb_build_object('revoked_at', kr.revoked_at);
    elsif kr.pause is not null then
      code := 'key_paused';
      details := kr.pause;
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
      perform leash_give_back(done, p_cost);
      done := '[]';
    end if;
  end if;

  -- The call as it stands (admitted by every window, or refused with a code that counts as a denial) against the
  -- wires. One that trips refuses it: an admitted call gives back what it reserved.
  if jsonb_array_length(p_wires) > 0
     and (code is null or code not in ('key_invalid', 'key_revoked', 'key_expired', 'key_paused')) then
    t := leash_tripwires(jsonb_build_object(
           'wires', p_wires, 'side', case when code is null then 'allowed' else 'denied' end,
           'cost', p_cost, 'recipients', p->'recipients', 'now', now_ts));
    shadow := t->'shadow';
    raised := t->'alerts';
    if jsonb_typeof(t->'trip') = 'object' then
      if code is null then
        perform leash_give_back(done, p_cost);
        done := '[]';
        min_left := null;
        details := t->'trip';
      else
        -- The denial that went over denials_per_minute: refused as the wire, with what refused it first.
        details := t->'trip' || jsonb_build_object('refused', jsonb_build_object('code', code, 'details', details));
      end if;
      code := 'tripwire_tripped';
      cancelled := t->'cancelled';
    end if;
  end if;

  -- The shadow version's caps and wires, for a call its rules allow that reached the windows: from the figures the
  -- enforced admission just read (less this call's own reservation), then the wires measured above.
  if jsonb_typeof(sh) = 'object' and sh->>'decision' = 'allowed'
     and (code is null or code in ('budget_exceeded', 'request_limit_exceeded', 'tripwire_tripped')) then
    for w in select value from jsonb_array_elements(coalesce(p->'shadow'->'windows', '[]')) loop
      select case when w->>'kind' = 'usd_day' then s.spent_micros + s.reserved_micros else s.requests end
        into used from spend_windows s
        where s.scope = w->>'scope' and s.kind = w->>'kind' and s.window_start = (w->>'window_start')::timestamptz;
      used := coalesce(used, 0);
      if done @> jsonb_build_array(jsonb_build_object('scope', w->>'scope', 'kind', w->>'kind',
                                                      'window_start', w->>'window_start')) then
        used := used - case when w->>'kind' = 'usd_day' then p_cost else 1 end;
      end if;
      if w->>'kind' = 'usd_day' and used + coalesce((p->'shadow'->>'cost')::bigint, 0) > (w->>'cap')::bigint then
        sh := sh || jsonb_build_object('decision', 'denied', 'code', 'budget_exceeded', 'scope', w->>'scope');
        exit;
      elsif w->>'kind' = 'requests_hour' and used + 1 > (w->>'cap')::bigint then
        sh := sh || jsonb_build_object('decision', 'denied', 'code', 'request_limit_exceeded', 'scope', w->>'scope');
        exit;
      end if;
    end loop;
    if sh->>'decision' = 'allowed' then
      select sw->>'wire' into shadow_wire from jsonb_array_elements(shadow) sw
        where sw ? 'shadow_version' and sw->>'would' in ('pause', 'revoke') limit 1;
      if shadow_wire is not null then
        sh := sh || jsonb_build_object('decision', 'denied', 'code', 'tripwire_tripped', 'wire', shadow_wire);
      end if;
    end if;
    p_row := p_row || jsonb_build_object('metadata', p_row->'metadata' || jsonb_build_object('shadow', sh));
  end if;

  -- Reservations all held: the approval is spent by this call, in this statement.
  if code is null and consume is not null then
    update approvals set status = 'used', used_at = now_ts, used_by_audit_id = (p_row->>'id')::uuid
      where id = consume;
    p_row := p_row || jsonb_build_object('metadata', coalesce(p_row->'metadata', '{}') || jsonb_build_object(
               'approval', jsonb_build_object('id', appr.id, 'status', 'used', 'decided_by', appr.decided_by,
                                              'decided_at', appr.decided_at, 'note', appr.note)));
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
                  || case when code is null then '{}' else jsonb_build_object('denial', details) end
                  || case when jsonb_array_length(shadow) > 0 then jsonb_build_object('tripwires', shadow)
                          else '{}' end));

  if code is null then
    insert into audit_unsettled (id, ts) values ((p_row->>'id')::uuid, now_ts);
  end if;

  return jsonb_build_object('admitted', code is null, 'code', code, 'details', details, 'ts', now_ts,
                            'remaining_micros', min_left)
         || case when jsonb_array_length(raised) > 0 then jsonb_build_object('tripwires', raised) else '{}' end
         || case when jsonb_array_length(cancelled) > 0 then jsonb_build_object('approvals_cancelled', cancelled)
                 else '{}' end
         || case when jsonb_typeof(sh) = 'object' then jsonb_build_object('shadow', sh) else '{}' end;
end $$;
