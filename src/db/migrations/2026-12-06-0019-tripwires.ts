// Frozen: tripwires (issue 27). A policy's wires measure a scope's calls (a key, its run, its agent, or the policy)
// inside the admission statement, exactly across replicas, and pause the scope, revoke its keys or alert when one goes
// over its line. Four tables, none on the call path unless a policy has a wire or a scope is paused:
// - pauses: a paused scope refuses every call (`key_paused`) until an operator resumes it; at most one active pause per
//   scope. A wire's figure counts only what came after the scope's last resume.
// - tripwire_marks: one row per call of a scope some wire measures, written under the scope's lock, carrying the
//   scope's running totals (calls, micro-USD, denials) before it and what it added. A sliding window's figure is
//   then two index probes (the latest mark, and the first one inside the window), whatever the traffic: exact,
//   with no scan of the window's rows. Marks older than the longest window (an hour) are pruned as scopes go on.
// - tripwire_recipients: when each recipient of a scope was last reached (distinct recipients per hour).
// - tripwire_alerts: when each wire last alerted for each scope, so `alert` (and `warn`) alert once per window.
// One role owns leash's database (README, "Grants leash needs"), so there is no role to grant these tables to.
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table pauses (
      id          bigint generated always as identity primary key,
      scope_kind  text not null check (scope_kind in ('key', 'run', 'agent', 'policy')),
      scope       text not null check (length(scope) between 1 and 256),
      -- The wire that paused it (null: an operator did) and its policy.
      wire        text check (length(wire) <= 128),
      policy      text,
      details     jsonb not null default '{}',
      paused_at   timestamptz not null default clock_timestamp(),
      paused_by   text not null check (length(paused_by) between 1 and 200),
      resumed_at  timestamptz,
      resumed_by  text check (length(resumed_by) <= 200),
      check ((resumed_at is null) = (resumed_by is null))
    );
    create unique index pauses_active on pauses (scope_kind, scope) where resumed_at is null;
    create index pauses_resumed on pauses (scope_kind, scope, resumed_at) where resumed_at is not null;

    create table tripwire_marks (
      scope        text not null,
      seq          bigint not null,
      ts           timestamptz not null,
      -- The scope's running totals before this mark, and what this call added.
      calls        bigint not null,
      usd_micros   bigint not null,
      denials      bigint not null,
      add_calls    integer not null,
      add_usd      bigint not null,
      add_denials  integer not null,
      primary key (scope, seq)
    );
    create index tripwire_marks_ts on tripwire_marks (scope, ts, seq);

    create table tripwire_recipients (
      scope      text not null,
      recipient  text not null,
      last_at    timestamptz not null,
      primary key (scope, recipient)
    );
    create index tripwire_recipients_recent on tripwire_recipients (scope, last_at);

    create table tripwire_alerts (
      policy      text not null,
      wire        text not null,
      scope       text not null,
      alerted_at  timestamptz not null,
      figure      bigint not null,
      primary key (policy, wire, scope)
    );
  `.execute(db);
}
