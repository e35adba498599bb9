import { UNKEYED_WARNING } from '../audit/audit-hash.js';
import type { Config } from '../config/config.js';
import { createLogger } from '../config/logger.js';
import { openDatabase, type DbHandle } from '../db/database.js';
import { createPipeline, type PipelineDeps } from '../pipeline/run-tool.js';
import { catalog } from '../../tools/index.js';
import type { Context } from './command.js';

export interface Runtime {
  handle: DbHandle;
  deps: PipelineDeps;
  close(): Promise<void>;
}

/** Opens the database (migrating it) and builds the pipeline with the tool catalog. */
export async function openRuntime(
  config: Config,
  o: { sandbox: boolean; poolMax?: number },
): Promise<Runtime> {
  const handle = await openDatabase(config, o.poolMax ? { poolMax: o.poolMax } : {});
  const log = createLogger(config);
  const deps = createPipeline({
    db: handle.db,
    config,
    catalog,
    sandbox: o.sandbox,
    log,
    vendorTimeoutMs: config.vendorTimeoutMs,
  });
  // Budget windows follow the database's clock; say when this machine's is far from it (NTP not running, say).
  const skewMs = await deps.clock.sync().catch(() => undefined);
  if (skewMs !== undefined && Math.abs(skewMs) > 1000)
    log.info("this machine's clock differs from the database's; budget windows follow the database", {
      skew_ms: skewMs,
    });
  return {
    handle,
    deps,
    // Settles still queued are written before the pool closes (a crash instead leaves them to reconcile).
    close: async () => {
      await deps.settler.flush();
      await handle.close();
    },
  };
}

/** Servers say once, at start, when the audit log's hashes are unkeyed (hashing is no control: they still start). */
export function warnIfUnkeyed(ctx: Context, config: Config): void {
  if (!config.auditKey) ctx.warn(UNKEYED_WARNING);
}

export { catalog };
