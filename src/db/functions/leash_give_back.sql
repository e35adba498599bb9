-- Gives back what a call reserved in the window rows `done` (its `windows` entries, each of which took `cost`
-- micro-USD or one request), in `done`'s order, which is the global lock order: when a later window or a tripwire
-- refuses the call after earlier windows took their share (leash_admit_call), or when admission's second transaction
-- finds the key revoked, rotated, expired or paused since the first (leash_admission).
create or replace function leash_give_back(done jsonb, cost bigint) returns void language plpgsql as $$
declare
  w jsonb;
begin
  for w in select value from jsonb_array_elements(done) loop
    if w->>'kind' = 'usd_day' then
      update spend_windows set reserved_micros = reserved_micros - cost
        where scope = w->>'scope' and kind = 'usd_day' and window_start = (w->>'window_start')::timestamptz;
    else
      update spend_windows set requests = requests - 1
        where scope = w->>'scope' and kind = 'requests_hour' and window_start = (w->>'window_start')::timestamptz;
    end if;
  end loop;
end $$;
