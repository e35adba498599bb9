-- The active pause that stops a key's calls, if any: on the key itself, its run, its agent or its policy (the earliest
-- when several are). As {scope_kind, scope, wire, paused_at} (wire null: an operator paused it), or null.
create or replace function leash_active_pause(p_key text, p_run text, p_agent text, p_policy text) returns jsonb
  language plpgsql stable as $$
begin
  return (
    select jsonb_build_object('scope_kind', z.scope_kind, 'scope', z.scope, 'wire', z.wire, 'paused_at', z.paused_at)
      from pauses z
      where z.resumed_at is null
        and ((z.scope_kind = 'key' and z.scope = p_key) or (z.scope_kind = 'run' and z.scope = p_run)
             or (z.scope_kind = 'agent' and z.scope = p_agent) or (z.scope_kind = 'policy' and z.scope = p_policy))
      order by z.paused_at, z.id
      limit 1);
end $$;
