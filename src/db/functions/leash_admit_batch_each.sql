-- Admit a batch one call at a time, exactly as each would be admitted alone (leash_admit_call), in order and in
-- one transaction: for batches with a call held for a person, or whose calls would pass a cap together. Every
-- lock the calls will take is taken first, in the one global order (leash_lock_batch, then the window rows in
-- leash_window_order), so batches, single admissions, settles and revokes cannot deadlock.
create or replace function leash_admit_batch_each(p jsonb) returns jsonb language plpgsql as $$
declare
  w record;
  res jsonb := '[]';
  lsn text;
begin
  perform leash_lock_batch(p);
  perform leash_lock_window(d.scope, d.kind, d.ws) from (
    select d0.* from (
      select distinct wj->>'scope' as scope, wj->>'kind' as kind, (wj->>'window_start')::timestamptz as ws
        from jsonb_array_elements(p) x, jsonb_array_elements(x->'windows') wj) d0
    order by leash_window_order(d0.scope, d0.kind, d0.ws) collate "C") d;
  for w in select e.x from jsonb_array_elements(p) with ordinality as e(x, n) order by e.n loop
    res := res || jsonb_build_array(leash_admit_call(w.x));
  end loop;
  -- The caller's commit (synchronous) flushes the WAL past this position, so past every row written here.
  lsn := pg_current_wal_insert_lsn()::text;
  select jsonb_agg(case when (r->>'admitted')::boolean then r || jsonb_build_object('durable_lsn', lsn) else r end
                   order by n)
    into res from jsonb_array_elements(res) with ordinality as e(r, n);
  return res;
end $$;
