-- Record a refusal decided before admission (policy, input, facts) in one round trip. When the row names a key, the
-- key is re-checked first: a revoked, expired or unknown key is what the row and the caller see, and a policy that
-- moved on since the caller evaluated it returns {stale: true} with nothing written. p: {key_id?, secret_hash?,
-- policy_version?, code, details, row}. Returns {code, details} or {stale, policy_version}.
create or replace function leash_record_denial(p jsonb) returns jsonb language plpgsql as $$
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
