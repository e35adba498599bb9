// Builds a pipeline on a test database with a given catalog and policy, and mints keys for it.
import { loadConfig, type Config } from '../../src/config/config.js';
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

export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ LEASH_HOME: '/nonexistent/leash-test-home', LEASH_LOG: 'silent', ...env });
}

export async function applyTestPolicy(db: Db, catalog: Catalog, doc: unknown) {
  return applyPolicy(db, validatePolicy(doc, ruleSpecs(catalog)));
}

export function pipelineFor(
  db: Db,
  catalog: Catalog,
  config = testConfig({ TESTVENDOR_TOKEN: 'tok_canary_123456' }),
  logLines?: string[],
  vendorTimeoutMs = 300,
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
