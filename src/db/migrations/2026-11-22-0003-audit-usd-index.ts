// Frozen: "every refund over $X in a day" answered inside one index (measured: 29 ms → 1 ms at 1 M rows).
import { sql, type Kysely } from 'kysely';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- migrations are frozen and must not import app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create index audit_tool_ts_usd on audit_log (tool, ts, (greatest(cost_micros, reserved_micros)));
    drop index audit_tool_ts;
  `.execute(db);
}
