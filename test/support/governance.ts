// Builds a pipeline on a test database with a given catalog and policy, and mints keys for it.
import type { Config } from '../../src/config/config.js';
import { createLogger } from '../../src/config/logger.js';
import type { Db } from '../../src/db/database.js';
import { mintKey, type MintOptions } from '../../src/keys/vault-keys.js';
import { validatePolicy } from '../../src/policy/compile.js';
import { applyPolicy } from '../../src/policies/store.js';
import {
  createPipeline,
  runTool,
  type PipelineDeps,
  type ToolCallResult,
} from '../../src/pipeline/run-tool.js';
import { ruleSpecs, type Catalog } from '../../src/pipeline/tool.js';
import { catalogConfig } from './config.js';

export function testConfig(env: Record<string, string> = {}): Config {
  return catalogConfig({ LEASH_HOME: '/nonexistent/leash-test-home', LEASH_LOG: 'silent', ...env });
}

export async function applyTestPolicy(db: Db, catalog: Catalog, doc: unknown) {
  return applyPolicy(db, validatePolicy(doc, ruleSpecs(catalog)));
}

/**
 * The vendor deadline of test pipelines: generous, so a fake that answers on a busy machine is never given up on.
 * A test of a timeout makes its fake hang (`inject({ mode: 'hang_acted' })`) and passes a short deadline instead.
 */
export const TEST_VENDOR_TIMEOUT_MS = 30_000;

/**
 * The deadline of a pipeline used only for a call whose fake hangs (never answers): any value times out, so it is
 * short. Not for calls that first read from the vendor (a refund looks its payment up): see GIVE_UP_AFTER_READ_MS.
 */
export const GIVE_UP_MS = 300;

/** The same for a call whose hanging write follows a read that must still be answered on a busy machine. */
export const GIVE_UP_AFTER_READ_MS = 3_000;

export function pipelineFor(
  db: Db,
  catalog: Catalog,
  config = testConfig({ TESTVENDOR_TOKEN: 'tok_canary_123456' }),
  logLines?: string[],
  vendorTimeoutMs = TEST_VENDOR_TIMEOUT_MS,
): PipelineDeps {
  return createPipeline({
    db,
    config,
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: logLines ? 'debug' : 'silent' }, (l) => logLines?.push(l)),
    vendorTimeoutMs,
  });
}

export async function keyFor(db: Db, o: Partial<MintOptions> & { policy: string }) {
  return mintKey(db, { agent: 'agent-1', runId: 'run-1', ...o });
}

/**
 * runTool, then waits for its settle to commit (settles are batched off the answer path): for tests that read
 * the settled row, spend or budget right after a call.
 */
export async function settledRun(
  deps: PipelineDeps,
  key: string | undefined,
  tool: string,
  args: unknown,
): Promise<ToolCallResult> {
  const r = await runTool(deps, key, tool, args);
  await deps.settler.flush();
  return r;
}

/** One audit row by id (an id of null finds nothing and throws, like a missing row). */
export function readAuditRow(db: Db, id: string | null) {
  return db
    .selectFrom('audit_log')
    .selectAll()
    .where('id', '=', id ?? '')
    .executeTakeFirstOrThrow();
}
