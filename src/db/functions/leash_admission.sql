-- Admission as one call in two transactions, so the shared window rows are locked only for as long as
-- the statement that changes them, not through a WAL flush (calls of one key or policy would otherwise
-- queue behind each other's fsync). 1: leash_admit_call, committed asynchronously (locks released at once).
-- 2: the key re-checked under its shared lock (a revoke that committed in between undoes the admission),
-- committed durably, which flushes the WAL of 1 as well. The caller calls the vendor only after both, so
-- no vendor call happens without a durable audit row. A crash between them loses nothing that was acted on:
-- 1 is either lost with its reservation, or durable as a pending row that reconcile settles.
-- Both start with leash_admission_session (read committed, a bounded wait for locks), and 2 commits durably
-- whatever synchronous_commit defaults to (server, database or role). A call that tripped a wire commits 1 durably
-- too: the pause or revoke it wrote is then on disk before the caller hears of it.
-- 2 also undoes the admission when the key, its run, its agent or its policy was paused since 1 — by an operator, or
-- by a wire on a scope this call's wires do not measure. A pause by a wire on one of this call's own scopes came from a
-- call that waited for this one's lock in 1 and counted it: this call stays admitted (so a wire admits exactly its
-- limit).
create or replace procedure leash_admission(p jsonb, inout r jsonb default null) language plpgsql as $$
declare
  k record;
  a record;
  pz jsonb;
begin
  perform leash_admission_session();
  perform set_config('synchronous_commit', 'off', true);
  r := leash_admit_call(p);
  if r->>'code' = 'tripwire_tripped' then
    perform set_config('synchronous_commit', 'on', true);
  end if;
  commit;
  if coalesce((r->>'admitted')::boolean, false) then
    perform leash_admission_session();
    -- Whatever the server's or the role's default: this transaction's commit waits for the WAL to be flushed.
    if current_setting('synchronous_commit') = 'off' then
      perform set_config('synchronous_commit', 'on', true);
    end if;
    perform pg_advisory_xact_lock_shared(leash_key_lock_id(p->>'key_id'));
    -- A transaction that writes no WAL commits without waiting for the flush (even with an xid), so write one
    -- record: this commit then waits for the WAL to be flushed past it, and so past transaction 1's audit row.
    r := r || jsonb_build_object('durable_lsn', pg_logical_emit_message(true, 'leash.admitted', p->'row'->>'id')::text);
    select v.revoked_at, v.expires_at, v.secret_hash,
           (select jsonb_build_object('scope_kind', z.scope_kind, 'scope', z.scope, 'wire', z.wire,
                                      'paused_at', z.paused_at)
              from pauses z
              where z.resumed_at is null
                and ((z.scope_kind = 'key' and z.scope = v.id) or (z.scope_kind = 'run' and z.scope = v.run_id)
                     or (z.scope_kind = 'agent' and z.scope = v.agent)
                     or (z.scope_kind = 'policy' and z.scope = v.policy))
                and (z.wire is null or not exists (
                      select 1 from jsonb_array_elements(case when jsonb_typeof(p->'tripwires') = 'array'
                                                              then p->'tripwires' else '[]' end) t
                        where t->>'kind' = z.scope_kind and t->>'id' = z.scope))
              order by z.paused_at, z.id
              limit 1) as pause
      into k from vault_keys v where v.id = p->>'key_id';
    -- leash's own lookups (get_budget) are served on a paused key: the agent reads why it is paused.
    pz := case when coalesce((p->>'pause_exempt')::boolean, false) then null else k.pause end;
    -- Rotated (rotate takes the same lock exclusively), revoked, expired or paused since transaction 1: undo it.
    if k.secret_hash is distinct from decode(p->>'secret_hash', 'hex')
       or k.revoked_at is not null or (k.expires_at is not null and k.expires_at <= clock_timestamp())
       or pz is not null then
      select id, budget, reserved_micros into a from audit_log where id = (p->'row'->>'id')::uuid for update;
      perform leash_give_back(a.budget, a.reserved_micros);
      r := jsonb_build_object('admitted', false, 'ts', r->'ts', 'remaining_micros', null,
             'durable_lsn', r->'durable_lsn',
             'code', case when k.secret_hash is distinct from decode(p->>'secret_hash', 'hex') then 'key_invalid'
                          when k.revoked_at is not null then 'key_revoked'
                          when k.expires_at is not null and k.expires_at <= clock_timestamp() then 'key_expired'
                          else 'key_paused' end,
             'details', case when k.secret_hash is distinct from decode(p->>'secret_hash', 'hex') then '{}'::jsonb
                             when k.revoked_at is not null then jsonb_build_object('revoked_at', k.revoked_at)
                             when k.expires_at is not null and k.expires_at <= clock_timestamp()
                               then jsonb_build_object('expired_at', k.expires_at)
                             else pz end)
           -- Wires that alerted in 1 are still raised.
           || case when r ? 'tripwires' then jsonb_build_object('tripwires', r->'tripwires') else '{}' end;
      update audit_log set decision = 'denied', reason = r->>'code', outcome = 'none', reserved_micros = 0,
          usd_micros = 0, cost_status = 'none', budget = '[]',
          metadata = metadata || jsonb_build_object('denial', r->'details')
        where id = a.id;
      delete from audit_unsettled where id = a.id;
    end if;
  end if;
  commit;
end $$;
