-- One window row, created when missing, locked.
create or replace function leash_lock_window(p_scope text, p_kind text, p_start timestamptz) returns void
  language plpgsql as $$
begin
  insert into spend_windows (scope, kind, window_start) values (p_scope, p_kind, p_start)
    on conflict (scope, kind, window_start) do nothing;
  perform 1 from spend_windows s
    where s.scope = p_scope and s.kind = p_kind and s.window_start = p_start for update;
end $$;
