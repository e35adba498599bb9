// Frozen: revoke reaches approvals. Revoking a key cancels its open approval requests in the same transaction
// (status `cancelled`, with when and why), so no one can approve a call whose key can no longer make it. Requests
// left open by keys revoked before this migration are cancelled here the same way.
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    -- Looser than before, so every existing row satisfies it; NOT VALID + VALIDATE avoids a long exclusive lock.
    alter table approvals drop constraint approvals_status_check;
    alter table approvals add constraint approvals_status_check
      check (status in ('pending', 'approved', 'denied', 'expired', 'used', 'cancelled')) not valid;
    alter table approvals validate constraint approvals_status_check;

    alter table approvals add column cancelled_at timestamptz, add column cancel_reason text;

    update approvals a set status = 'cancelled', cancelled_at = clock_timestamp(), cancel_reason = 'key_revoked',
        link_nonce_hash = null
      from vault_keys k
      where k.id = a.key_id and k.revoked_at is not null
        and a.status in ('pending', 'approved') and a.expires_at > clock_timestamp();
  `.execute(db);
}
