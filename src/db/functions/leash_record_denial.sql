-- Record a refusal decided before admission (policy, input, facts) in one round trip. When the row names a key, the
-- key is re-checked first: a revoked, expired, unknown or paused key (its run, agent or policy paused) is what the row
-- and the caller see, and a policy that moved on since the caller evaluated it returns {stale: true} with nothing
-- written. p: {key_id?, secret_hash?, policy_version?, code, details, row, tripwires?}. With the policy's `tripwires`,
-- the refusal is a denial denials_per_minute counts: under the scopes' locks (leash_lock_tripwires), exactly across
-- replicas, and the denial that goes over a line is refused tripwire_tripped (details naming the wire, and `refused`:
-- the code and details it was refused with first), its scope paused or its keys revoked in this statement.
-- Returns {code, details[, tripwires][, approvals_cancelled]} or {stale, policy_version}.
create or replace function leash_record_denial(p jsonb) returns jsonb language plpgsql as $$
declare
  k record;
  kr record;
  code text := p->>'code';
  details jsonb := coalesce(p->'details', '{}');
  now_ts timestamptz := clock_timestamp();
  p_row jsonb := p->'row';
  p_wires jsonb := case when jsonb_typeof(p->'tripwires') = 'array' then p->'tripwires' else '[]' end;
  t jsonb;
  shadow jsonb := '[]';
  raised jsonb := '[]';
  cancelled jsonb := '[]';
begin
  if p->>'secret_hash' is not null then
    select kk.secret_hash, kk.revoked_at, kk.expires_at, coalesce(kk.policy_version, pp.latest_version) as version,
           leash_active_pause(kk.id, kk.run_id, kk.agent, kk.policy) as pause
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
    elsif k.pause is not null then
      code := 'key_paused'; details := k.pause;
    end if;

    -- The policy's wires count this denial: their scopes' locks, then the key and its pauses read again (a call that
    -- held them first may have paused the scope or revoked the key), then the figures.
    -- Refusals of the key itself, and those for leash's or the vendor's own trouble (a lookup that failed, no usable
    -- credential), are not the agent's doing: they do not count.
    if jsonb_array_length(p_wires) > 0
       and code not in ('key_invalid', 'key_revoked', 'key_expired', 'key_paused', 'tripwire_tripped',
                        'facts_unavailable', 'credential_unavailable', 'internal_error') then
      perform leash_lock_tripwires(p_wires);
      now_ts := clock_timestamp();
      select kk.revoked_at, leash_active_pause(kk.id, kk.run_id, kk.agent, kk.policy) as pause into kr
        from vault_keys kk where kk.id = p->>'key_id';
      if kr.revoked_at is not null then
        code := 'key_revoked'; details := jsonb_build_object('revoked_at', kr.revoked_at);
      elsif kr.pause is not null then
        code := 'key_paused'; details := kr.pause;
      else
        t := leash_tripwires(jsonb_build_object('wires', p_wires, 'side', 'denied', 'now', now_ts));
        shadow := t->'shadow';
        raised := t->'alerts';
        if jsonb_typeof(t->'trip') = 'object' then
          details := t->'trip' || jsonb_build_object('refused', jsonb_build_object('code', code, 'details', details));
          code := 'tripwire_tripped';
          cancelled := t->'cancelled';
        end if;
      end if;
    end if;
  end if;
  insert into audit_log
    select * from jsonb_populate_record(null::audit_log, p_row || jsonb_build_object(
      'ts', now_ts, 'decision', 'denied', 'reason', code, 'outcome', 'none',
      'reserved_micros', 0, 'cost_micros', 0, 'usd_micros', 0, 'cost_status', 'none', 'budget', '[]'::jsonb,
      'sandbox', coalesce((p_row->>'sandbox')::boolean, false),
      'metadata', coalesce(p_row->'metadata', '{}') || jsonb_build_object('denial', details)
                  || case when jsonb_array_length(shadow) > 0 then jsonb_build_object('tripwires', shadow)
                          else '{}' end));
  return jsonb_build_object('code', code, 'details', details)
         || case when jsonb_array_length(raised) > 0 then jsonb_build_object('tripwires', raised) else '{}' end
         || case when jsonb_array_length(cancelled) > 0 then jsonb_build_object('approvals_cancelled', cancelled)
                 else '{}' end;
end $$;
