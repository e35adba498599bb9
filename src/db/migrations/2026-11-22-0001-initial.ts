// Frozen: the first schema. Never edit; add a new dated migration instead.
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table vendor_credentials (
      vendor        text not null check (vendor ~ '^[a-z][a-z0-9_]*$'),
      name          text not null check (name ~ '^[a-z0-9][a-z0-9_-]*$'),
      source        text not null check (source in ('env', 'encrypted')),
      env_var       text,
      ciphertext    bytea,
      base_url      text,
      account       text,
      created_at    timestamptz not null default now(),
      updated_at    timestamptz not null default now(),
      primary key (vendor, name),
      check ((source = 'env') = (env_var is not null)),
      check ((source = 'encrypted') = (ciphertext is not null))
    );

    create table policies (
      name           text primary key check (name ~ '^[a-z0-9][a-z0-9_.-]*$'),
      latest_version integer not null,
      created_at     timestamptz not null default now(),
      updated_at     timestamptz not null default now()
    );

    create table policy_versions (
      policy      text not null references policies(name),
      version     integer not null check (version > 0),
      document    jsonb not null,
      digest      text not null,
      -- Loop guard, lifted out of the document so authentication can count repeats in the same query.
      loop_limit          integer,
      loop_window_seconds integer,
      created_at  timestamptz not null default now(),
      primary key (policy, version)
    );

    create table vault_keys (
      id              text primary key,
      secret_hash     bytea not null,
      agent           text not null,
      run_id          text,
      policy          text not null references policies(name),
      policy_version  integer,
      label           text,
      metadata        jsonb not null default '{}',
      created_at      timestamptz not null default now(),
      expires_at      timestamptz,
      revoked_at      timestamptz,
      revoked_reason  text,
      rotated_at      timestamptz
    );
    create index vault_keys_agent on vault_keys (agent, created_at desc);
    create index vault_keys_run on vault_keys (run_id) where run_id is not null;

    -- One row per budget scope and window. USD rows use spent/reserved, request rows use requests.
    create table spend_windows (
      scope            text not null,
      kind             text not null check (kind in ('usd_day', 'requests_hour')),
      window_start     timestamptz not null,
      spent_micros     bigint not null default 0 check (spent_micros >= 0),
      reserved_micros  bigint not null default 0 check (reserved_micros >= 0),
      requests         integer not null default 0 check (requests >= 0),
      updated_at       timestamptz not null default now(),
      primary key (scope, kind, window_start)
    );

    create table audit_log (
      id                 uuid primary key,
      ts                 timestamptz not null default clock_timestamp(),
      key_id             text,
      agent              text,
      run_id             text,
      policy             text,
      policy_version     integer,
      tool               text not null,
      vendor             text,
      operation          text,
      account            text,
      decision           text not null check (decision in ('allowed', 'denied')),
      reason             text,
      outcome            text not null check (outcome in ('pending', 'succeeded', 'failed', 'unknown', 'none')),
      reserved_micros    bigint not null default 0,
      cost_micros        bigint not null default 0,
      cost_status        text not null default 'none' check (cost_status in ('none', 'estimated', 'pending', 'settled')),
      amount             bigint,
      currency           text,
      vendor_request_id  text,
      vendor_object_id   text,
      http_status        integer,
      error              text,
      request            jsonb,
      args_hash          text,
      budget             jsonb not null default '[]',
      sandbox            boolean not null default false,
      latency_ms         integer,
      settled_at         timestamptz,
      metadata           jsonb not null default '{}'
    );
    create index audit_by_run on audit_log (run_id, ts) where run_id is not null;
    create index audit_by_agent_ts on audit_log (agent, ts);
    create index audit_denied_ts on audit_log (ts) where decision = 'denied';
    create index audit_by_ts on audit_log (ts);
    create index audit_loop on audit_log (key_id, args_hash, ts);
    create index audit_unsettled on audit_log (ts) where outcome in ('pending', 'unknown') or cost_status = 'pending';
    create index audit_tool_ts on audit_log (tool, ts);

    create function leash_audit_notify() returns trigger language plpgsql as $$
    begin
      perform pg_notify('leash_audit', new.id::text);
      return null;
    end $$;
    create trigger audit_notify after insert on audit_log
      for each row execute function leash_audit_notify();
  `.execute(db);
}
