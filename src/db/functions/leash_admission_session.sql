-- Every admission transaction starts here. Read committed only: each statement must see what committed while
-- it waited for a lock. And a bounded wait for locks: one not granted in leash.admission_lock_timeout (10 s
-- unless set; a window row held by someone's open transaction, say) fails the admission, so the call is
-- refused, its vendor not called, instead of holding the agent indefinitely.
create or replace function leash_admission_session() returns void language plpgsql as $$
begin
  if current_setting('transaction_isolation') <> 'read committed' then
    raise exception 'leash admission needs read committed transactions, not %', current_setting('transaction_isolation')
      using hint = 'set default_transaction_isolation to ''read committed'' for leash''s role, or use session pooling';
  end if;
  perform set_config('lock_timeout',
                     coalesce(nullif(current_setting('leash.admission_lock_timeout', true), ''), '10s'), true);
end $$;
