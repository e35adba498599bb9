import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import pg from 'pg';

/** The non-superuser role that owns leash's database; the URL leash uses and prints connects as it. */
export const OWNER_ROLE = 'leash_owner';

/** A SCRAM-SHA-256 verifier, so the owner's password never travels to (or is logged by) the server in clear. */
function scramVerifier(password: string): string {
  const salt = randomBytes(16);
  const iterations = 4096;
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const stored = createHash('sha256').update(createHmac('sha256', salted).update('Client Key').digest());
  const server = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${stored.digest('base64')}:${server.toString('base64')}`;
}

// Hands what the superuser created in the leash database (servers set up before the owner role) to the owner.
const HAND_OVER = `
do $$
declare r record;
begin
  for r in
    select c.oid::regclass as name,
           case c.relkind when 'S' then 'sequence' when 'v' then 'view' when 'm' then 'materialized view'
                          when 'f' then 'foreign table' else 'table' end as kind
      from pg_class c
     where c.relnamespace = 'public'::regnamespace and c.relowner = current_user::regrole
       and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
       -- sequences behind serial/identity columns follow their table (partitions, which depend on theirs the same
       -- way, do not: each is handed over itself)
       and not (c.relkind = 'S' and exists (select 1 from pg_depend d
                                              where d.classid = 'pg_class'::regclass and d.objid = c.oid
                                                and d.deptype in ('a', 'i')))
  loop
    execute format('alter %s %s owner to ${OWNER_ROLE}', r.kind, r.name);
  end loop;
  for r in select p.oid::regprocedure as name from pg_proc p
            where p.pronamespace = 'public'::regnamespace and p.proowner = current_user::regrole
              and p.prokind in ('f', 'p')
  loop
    execute format('alter routine %s owner to ${OWNER_ROLE}', r.name);
  end loop;
end $$`;

/**
 * Creates (or re-asserts) the non-superuser role that owns leash's database, and that database.
 * Superuser powers (COPY … FROM PROGRAM, reading server files) stay with the bootstrap role only.
 */
export async function provision(adminUrl: string, database: string, ownerPassword: string): Promise<void> {
  const connect = async (db: string) => {
    const u = new URL(adminUrl);
    u.pathname = `/${db}`;
    const client = new pg.Client({ connectionString: u.toString(), connectionTimeoutMillis: 10_000 });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  };
  const admin = await connect('postgres');
  try {
    const exists = await admin.query('select 1 from pg_roles where rolname = $1', [OWNER_ROLE]);
    await admin.query(
      `${exists.rowCount ? 'alter' : 'create'} role ${OWNER_ROLE} with login nosuperuser nocreatedb ` +
        `nocreaterole noreplication nobypassrls password ${admin.escapeLiteral(scramVerifier(ownerPassword))}`,
    );
    const db = await admin.query('select 1 from pg_database where datname = $1', [database]);
    const name = admin.escapeIdentifier(database);
    await admin.query(
      db.rowCount
        ? `alter database ${name} owner to ${OWNER_ROLE}`
        : `create database ${name} owner ${OWNER_ROLE}`,
    );
  } finally {
    await admin.end().catch(() => undefined);
  }
  const inDb = await connect(database);
  try {
    await inDb.query(HAND_OVER);
  } finally {
    await inDb.end().catch(() => undefined);
  }
}
