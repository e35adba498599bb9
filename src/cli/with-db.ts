import { openDatabase, type Db } from '../db/database.js';
import type { Context } from './command.js';

/** Opens a small pool (migrating first), runs `fn`, and always closes the pool. */
export async function withDb<T>(ctx: Context, fn: (db: Db) => Promise<T>): Promise<T> {
  const handle = await openDatabase(ctx.config(), { poolMax: 2 });
  try {
    return await fn(handle.db);
  } finally {
    await handle.close();
  }
}
