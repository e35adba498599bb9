import { UNKEYED_WARNING } from '../audit/audit-hash.js';
import type { Config } from '../config/config.js';
import { createLogger, type Logger } from '../config/logger.js';
import { listenForCredentialChanges, type CredentialChanges } from '../credentials/credential-changes.js';
import { envSecret } from '../credentials/credentials.js';
import { checkSecretShapes } from '../config/secret-shape.js';
import { openDatabase, type DbHandle } from '../db/database.js';
import { createPipeline, type PipelineDeps } from '../pipeline/run-tool.js';
import { catalog } from '../../tools/index.js';
import type { Context } from './command.js';

export interface Runtime {
  handle: DbHandle;
  deps: PipelineDeps;
  /** Hears `leash vendors set/remove` from any process, so cached vendor clients go at the next call. */
  credentialChanges: CredentialChanges;
  close(): Promise<void>;
}

/** Opens the database (migrating it) and builds the pipeline with the tool catalog. */
export async function openRuntime(
  config: Config,
  o: { sandbox: boolean; poolMax?: number },
): Promise<Runtime> {
  const handle = await openDatabase(config, o.poolMax ? { poolMax: o.poolMax } : {});
  const log = createLogger(config);
  warnAboutEnvCredentials(config, log);
  const credentialChanges = listenForCredentialChanges(() => handle.connectSession(), log);
  const deps = createPipeline({
    db: handle.db,
    config,
    catalog,
    sandbox: o.sandbox,
    log,
    vendorTimeoutMs: config.vendorTimeoutMs,
    credentialChanges,
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
    credentialChanges,
    // Settles still queued are written before the pool closes (a crash instead leaves them to reconcile).
    close: async () => {
      // Calls waiting on an approval answer now (status as it stands), before their pool goes.
      deps.approvalWaits.close();
      await new Promise((resolve) => setImmediate(resolve)); // their settles are queued by then
      await deps.settler.flush();
      await credentialChanges.close();
      await handle.close();
    },
  };
}

/** Config refused malformed env credentials; a well-formed one may still deserve a word (a full Stripe key). */
function warnAboutEnvCredentials(config: Config, log: Logger): void {
  for (const spec of catalog.vendors.values()) {
    const secret = envSecret(config, spec.env.secrets);
    const { warnings } = checkSecretShapes(spec.name, secret, spec.env.shapes, (f) => {
      return `${f} (${spec.env.secrets[f] ?? '?'})`;
    });
    for (const warning of warnings) log.info(warning);
  }
}

/** Servers say once, at start, when the audit log's hashes are unkeyed (hashing is no control: they still start). */
export function warnIfUnkeyed(ctx: Context, config: Config): void {
  if (!config.auditKey) ctx.warn(UNKEYED_WARNING);
}

export { catalog };
