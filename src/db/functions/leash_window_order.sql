-- The one global order every transaction locks window rows in: key scopes before policy scopes, USD before
-- requests, then window start and scope (byte order). Admissions (single or batched) and settles all use it.
-- (Inlinable: every function in it is immutable.)
create or replace function leash_window_order(p_scope text, p_kind text, p_start timestamptz) returns text
  language sql immutable as $$
  select (case when p_scope like 'key:%' then '0' else '1' end) || (case when p_kind = 'usd_day' then '0' else '1' end)
         || lpad(extract(epoch from p_start - timestamptz '1970-01-01 00:00:00+00')::bigint::text, 12, '0') || p_scope
$$;
