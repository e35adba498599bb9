// Frozen: one vendor object, one audit row. A call that creates an object (a refund, an SMS, an email) owns its
// id; reads (operation `GET …`) only name the object they read, so many of them may share one id.
// Rows that already share an id (the old Twilio reconcile could credit one SID twice) keep it on the row settled
// first; the others move it to metadata.vendor_object_id_conflict for an operator to look at.
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    with ranked as (
      select id, row_number() over (
               partition by vendor, vendor_object_id
               order by settled_at nulls last, ts, id) as n
      from audit_log
      where vendor_object_id is not null and operation not like 'GET %'
    )
    update audit_log a
      set metadata = a.metadata || jsonb_build_object('vendor_object_id_conflict', a.vendor_object_id),
          vendor_object_id = null
      from ranked r
      where r.id = a.id and r.n > 1;

    create unique index audit_vendor_object on audit_log (vendor, vendor_object_id)
      where vendor_object_id is not null and operation not like 'GET %';
  `.execute(db);
}
