// Frozen: admission holds its guarantees whatever the session's defaults (0007's and 0011's bodies otherwise).
// - synchronous_commit: leash_admission's second transaction is the one whose commit makes a lone call's audit row
//   durable before the vendor is called. 0007 left it at the session's setting, so where synchronous_commit
//   defaults to off (server, database or role) a lone call could reach its vendor before its audit row was on
//   disk. It now sets it on for that transaction when off, as the batch functions (0009 on) do for theirs.
// - transaction_isolation: admission waits for a key's lock and then reads the key, the loop guard's count and the
//   windows, and needs each statement to see what committed meanwhile (a revoke, an identical call). Under
//   repeatable read or serializable the statements keep the snapshot taken before the wait: a batch waiting on a
//   revoke was admitted after the revoke had returned. Admission now refuses to run in anything but read committed
//   (leash's own connections set it; this catches a pooler that shares sessions): leash_admission, and
//   leash_lock_batch, which every batch path calls before anything else.
// - lock_timeout: a lone admission waited for a lock as long as the session let it (indefinitely by default);
//   batches gave up after 10 s. Both now give up after leash.admission_lock_timeout (10 s unless set).
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    -- Every admission transaction starts here. Read committed only: each statement must see what committed while
    -- it waited for a lock. And a bounded wait for locks: one not granted in leash.admission_lock_timeout (10 s
    -- unless set; a window row held by someone's open transaction, say) fails the admission, so the call is
    -- refused, its vendor not called, instead of holding the agent indefinitely.
    create function leash_admission_session() returns void language plpgsql as $$
    begin
      if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'leash admission needs read committed transactions, not %', current_setting('transaction_isolation')
          using hint = 'set default_transaction_isolation to ''read committed'' for leash''s role, or use session pooling';
      end if;
      perform set_config('lock_timeout',
                         coalesce(nullif(current_setting('leash.admission_lock_timeout', true), ''), '10s'), true);
    end $$;

    -- Every advisory lock the calls of a batch take, in the global order: key locks shared, in key id order (as
    -- revoke and rotate take them exclusively), then approval and loop-guard locks by id.
    create or replace function leash_lock_batch(p jsonb) returns void language plpgsql as $$
    begin
      perform leash_admission_session();
      perform pg_advisory_xact_lock_shared(leash_key_lock_id(s.k))
        from (select distinct x->>'key_id' as k from jsonb_array_elements(p) x order by 1) s;
      perform pg_advisory_xact_lock(s.l)
        from (select distinct on (s0.class, s0.l) s0.l, s0.class from (
                select 0 as class, hashtextextended('leash:approval:' || (x->>'key_id') || ':' || (x->'row'->>'args_hash'), 0) as l
                  from jsonb_array_elements(p) x
                  where jsonb_typeof(x->'approval') = 'object' and x->'row'->>'args_hash' is not null
                union all
                select 1, hashtextextended('leash:loop:' || (x->>'key_id') || ':' || (x->'row'->>'args_hash'), 0)
                  from jsonb_array_elements(p) x where x->>'loop_limit' is not null) s0
              order by s0.class, s0.l) s;
    end $$;

    create or replace procedure leash_admission(p jsonb, inout r jsonb default null) language plpgsql as $$
    declare
      k record;
      w jsonb;
      a record;
    begin
      perform leash_admission_session();
      perform set_config('synchronous_commit', 'off', true);
      r := leash_admit_call(p);
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
        select revoked_at, expires_at, secret_hash into k from vault_keys where id = p->>'key_id';
        -- Rotated (rotate takes the same lock exclusively), revoked or expired since transaction 1: undo it.
        if k.secret_hash is distinct from decode(p->>'secret_hash', 'hex')
           or k.revoked_at is not null or (k.expires_at is not null and k.expires_at <= clock_timestamp()) then
          select id, budget, reserved_micros into a from audit_log where id = (p->'row'->>'id')::uuid for update;
          for w in select value from jsonb_array_elements(a.budget) loop
            if w->>'kind' = 'usd_day' then
              update spend_windows set reserved_micros = reserved_micros - a.reserved_micros
                where scope = w->>'scope' and kind = 'usd_day' and window_start = (w->>'window_start')::timestamptz;
            else
              update spend_windows set requests = requests - 1
                where scope = w->>'scope' and kind = 'requests_hour' and window_start = (w->>'window_start')::timestamptz;
            end if;
          end loop;
          r := jsonb_build_object('admitted', false, 'ts', r->'ts', 'remaining_micros', null,
                 'durable_lsn', r->'durable_lsn',
                 'code', case when k.secret_hash is distinct from decode(p->>'secret_hash', 'hex') then 'key_invalid'
                              when k.revoked_at is not null then 'key_revoked' else 'key_expired' end,
                 'details', case when k.revoked_at is not null then jsonb_build_object('revoked_at', k.revoked_at)
                                 when k.expires_at is not null then jsonb_build_object('expired_at', k.expires_at)
                                 else '{}'::jsonb end);
          update audit_log set decision = 'denied', reason = r->>'code', outcome = 'none', reserved_micros = 0,
              usd_micros = 0, cost_status = 'none', budget = '[]',
              metadata = metadata || jsonb_build_object('denial', r->'details')
            where id = a.id;
          delete from audit_unsettled where id = a.id;
        end if;
      end if;
      commit;
    end $$;
  `.execute(db);
}
