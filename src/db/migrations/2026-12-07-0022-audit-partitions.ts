// Frozen: audit_log partitioned by time (issue 28). The table becomes a natively partitioned one, RANGE on `id`:
// audit ids are UUIDv7, whose first 48 bits are the admitting replica's clock, so each UTC month is the id range
// from the lowest UUID of its first millisecond to the next month's. Ranging on `id` rather than `ts` keeps the primary
// key `id` (a partitioned table's unique keys must hold its partition key), so a lookup or settle by id touches one
// partition and nothing that names an audit row changes. Monthly, not daily: the operator queries that are not by id
// (by agent, run, key, tool, last N) probe one index per partition, so a year is 12 probes, not 365; retention drops
// whole months.
//
// A populated table is not copied: it is renamed audit_log_legacy and attached as the first partition, ids up to the
// start of next month (one scan to check the bound; no rewrite, no index build, no second copy on disk). Its indexes
// become the partitions of the new table's same-named indexes. Rows with ids at or past that bound (a replica's clock
// ahead, an id that is not a UUIDv7) move to the default partition. An empty table is simply replaced. Everything the
// table had is carried over by reading the catalog: columns, defaults, NOT NULL and CHECK constraints, the primary
// key and other indexes, triggers, grants, storage parameters (on each partition: a partitioned table has none).
// Then this month (or, after legacy, next month) and two ahead get partitions, and audit_log_default takes any other
// id, so an insert never fails. leash creates later months itself (src/audit/partitions.ts).
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    do $$
    declare
      old_oid    oid;
      populated  boolean;
      opts       text;
      index_defs text[];
      trig_defs  text[];
      d          text;
      r          record;
      month0     timestamp;
      m          timestamp;
      i          int;
      bound_of   text := $f$
        select (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-0000-0000-000000000000')::uuid
          from (select lpad(to_hex((extract(epoch from ($1 at time zone 'UTC')) * 1000)::bigint), 12, '0') as h) x
      $f$;
      lo uuid;
      hi uuid;
    begin
      lock table audit_log in access exclusive mode;
      old_oid := 'audit_log'::regclass;
      select exists (select 1 from audit_log) into populated;
      select coalesce(array_to_string(reloptions, ', '), 'fillfactor=85') into opts from pg_class where oid = old_oid;

      -- What to recreate on the partitioned table, written against the name audit_log (pg_get_*def name it so).
      select coalesce(array_agg(pg_get_indexdef(x.indexrelid) order by c.relname), '{}') into index_defs
        from pg_index x join pg_class c on c.oid = x.indexrelid
        where x.indrelid = old_oid
          and not exists (select 1 from pg_constraint k where k.conindid = x.indexrelid and k.conrelid = old_oid);
      select coalesce(array_agg(pg_get_triggerdef(t.oid) order by t.tgname), '{}') into trig_defs
        from pg_trigger t where t.tgrelid = old_oid and not t.tgisinternal;

      alter table audit_log rename to audit_log_legacy;
      -- The old indexes give their names to the new table's; they become legacy's partition indexes.
      for r in select c.relname from pg_index x join pg_class c on c.oid = x.indexrelid where x.indrelid = old_oid loop
        execute format('alter index %I rename to %I', r.relname,
                       left('audit_log_legacy_' || regexp_replace(r.relname, '^audit_(log_)?', ''), 63));
      end loop;
      for r in select t.tgname from pg_trigger t where t.tgrelid = old_oid and not t.tgisinternal loop
        execute format('drop trigger %I on audit_log_legacy', r.tgname);
      end loop;

      create table audit_log (like audit_log_legacy including defaults including constraints including storage
                              including comments including generated including identity including statistics
                              including compression)
        partition by range (id);
      -- Unique and primary keys (they hold id, the partition key), under their old names.
      for r in select k.conname, pg_get_constraintdef(k.oid) as def from pg_constraint k
                 where k.conrelid = old_oid and k.contype in ('p', 'u', 'x') loop
        execute format('alter table audit_log add constraint %I %s',
                       regexp_replace(r.conname, '^audit_log_legacy_', 'audit_log_'), r.def);
      end loop;
      foreach d in array index_defs loop
        execute d;
      end loop;
      -- Grants the table had (its owner's own rights go with ownership).
      for r in select a.privilege_type, a.is_grantable,
                      case when a.grantee = 0 then 'public' else quote_ident(g.rolname) end as grantee
                 from pg_class c cross join lateral aclexplode(c.relacl) a left join pg_roles g on g.oid = a.grantee
                 where c.oid = old_oid and a.grantee <> c.relowner loop
        execute format('grant %s on audit_log to %s%s', r.privilege_type, r.grantee,
                       case when r.is_grantable then ' with grant option' else '' end);
      end loop;

      month0 := date_trunc('month', now() at time zone 'UTC');
      if populated then
        execute bound_of into hi using (month0 + interval '1 month') at time zone 'UTC';
        create temp table audit_moved on commit drop as select * from audit_log_legacy where id >= hi;
        delete from audit_log_legacy where id >= hi;
        execute format('alter table audit_log attach partition audit_log_legacy for values from (minvalue) to (%L)', hi);
        month0 := month0 + interval '1 month';
      else
        drop table audit_log_legacy;
      end if;

      for i in 0..2 loop
        m := month0 + make_interval(months => i);
        execute bound_of into lo using m at time zone 'UTC';
        execute bound_of into hi using (m + interval '1 month') at time zone 'UTC';
        execute format('create table %I partition of audit_log for values from (%L) to (%L) with (%s)',
                       'audit_log_y' || to_char(m, 'YYYY') || 'm' || to_char(m, 'MM'), lo, hi, opts);
      end loop;
      execute format('create table audit_log_default partition of audit_log default with (%s)', opts);
      if populated then
        insert into audit_log select * from audit_moved;
      end if;
      foreach d in array trig_defs loop
        execute d;
      end loop;
      -- Each partition's index named after the table's (audit_by_run_y2027m01), so a plan says which one served.
      for r in select ci.relname as child, left(pi.relname || '_' || substr(pc.relname, 11), 63) as want
                 from pg_inherits hp join pg_class pc on pc.oid = hp.inhrelid
                 join pg_index x on x.indrelid = pc.oid join pg_class ci on ci.oid = x.indexrelid
                 join pg_inherits h on h.inhrelid = ci.oid join pg_class pi on pi.oid = h.inhparent
                 where hp.inhparent = 'audit_log'::regclass loop
        if r.child <> r.want then
          execute format('alter index %I rename to %I', r.child, r.want);
        end if;
      end loop;
    end $$;
  `.execute(db);
}
