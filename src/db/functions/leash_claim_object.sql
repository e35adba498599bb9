-- May this row record this object id? Yes for reads (GET: many rows may name one object) and for the row that
-- owns it (claimed now, or before by this row); no when another row owns it. One vendor object, one audit row
-- (table audit_objects).
create or replace function leash_claim_object(p_vendor text, p_object text, p_operation text, p_audit uuid)
  returns boolean language plpgsql as $$
begin
  if p_object is null or p_vendor is null or coalesce(p_operation, '') like 'GET %' then
    return true;
  end if;
  insert into audit_objects (vendor, object_id, audit_id) values (p_vendor, p_object, p_audit)
    on conflict (vendor, object_id) do nothing;
  if found then
    return true;
  end if;
  return exists (select 1 from audit_objects o
                 where o.vendor = p_vendor and o.object_id = p_object and o.audit_id = p_audit);
end $$;
