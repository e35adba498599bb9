// One leash for the framework tests: a real database, fake vendors, `leash serve` in-process and `leash mcp` args.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/config/logger.js';
import { createPipeline } from '../../src/pipeline/run-tool.js';
import { startHttpServer, type RunningHttp } from '../../src/server/http.js';
import { catalog } from '../../tools/index.js';
import { childEnv, LEASH_BIN } from '../support/cli.js';
import { freshDatabase, type TestDatabase } from '../support/database.js';
import { applyTestPolicy, keyFor, TEST_VENDOR_TIMEOUT_MS, testConfig } from '../support/governance.js';
import { startVendors, type Vendors } from '../support/vendors.js';

export const POLICY = {
  name: 'frameworks',
  limits: { daily_usd: 100 },
  tools: {
    issue_refund: { max_amount_usd: 50, customers: ['cus_A'] },
    get_payment: { customers: ['cus_A'] },
    send_sms: { from: '+15550001111', to_prefixes: ['+1'], max_segments: 2 },
    send_email: { from: 'Support <support@acme.com>', to_domains: ['acme.com'], max_recipients: 2 },
    get_budget: {},
  },
  loop_guard: { identical_calls: 3, window: '10m' },
};
export const TOOL_NAMES = Object.keys(POLICY.tools).sort();

export interface Leash {
  tdb: TestDatabase;
  vendors: Vendors;
  /** The Streamable HTTP endpoint. */
  url: string;
  /** A fresh vault key (one per agent run, so loop-guard counts never leak between tests). */
  key(): Promise<string>;
  /** How an agent host starts `leash mcp` over stdio with this key. */
  stdio(key: string): { command: string; args: string[]; env: Record<string, string> };
  close(): Promise<void>;
}

export async function startLeash(): Promise<Leash> {
  const tdb = await freshDatabase(6);
  const vendors = await startVendors();
  const home = await mkdtemp(join(tmpdir(), 'leash-fw-'));
  const deps = createPipeline({
    db: tdb.db,
    config: testConfig({ ...vendors.env, LEASH_HOME: home }),
    catalog,
    sandbox: false,
    log: createLogger({ logLevel: 'silent' }, () => undefined),
    vendorTimeoutMs: TEST_VENDOR_TIMEOUT_MS,
  });
  await applyTestPolicy(tdb.db, catalog, POLICY);
  const http: RunningHttp = await startHttpServer(deps, { host: '127.0.0.1', port: 0 });
  return {
    tdb,
    vendors,
    url: `${http.url}/mcp`,
    key: async () => (await keyFor(tdb.db, { policy: POLICY.name })).key,
    stdio: (key) => ({
      command: process.execPath,
      args: [LEASH_BIN, 'mcp'],
      env: childEnv({
        ...vendors.env,
        DATABASE_URL: tdb.url,
        LEASH_HOME: home,
        LEASH_VAULT_KEY: key,
      }) as Record<string, string>,
    }),
    async close() {
      await http.close();
      await vendors.close();
      await tdb.close();
      await rm(home, { recursive: true, force: true });
    },
  };
}

type Json = Record<string, unknown>;

/** The (sub)schemas of a tool's parameters that carry no type: what a model could not fill in correctly. */
export function untypedFields(schema: Json, path = ''): string[] {
  const out: string[] = [];
  const props = (schema.properties ?? {}) as Record<string, Json>;
  for (const [name, s] of Object.entries(props)) {
    if (s.type === undefined && s.enum === undefined) out.push(`${path}${name}`);
    if (s.items) out.push(...untypedFields({ properties: { '[]': s.items } }, `${path}${name}`));
    if (s.properties) out.push(...untypedFields(s, `${path}${name}.`));
  }
  return out;
}

/** The contract every framework passes to its model: the refusal's code, its retry advice and its audit id. */
export const REFUSAL_TEXT = /(recipient_not_allowed): .*Do not retry.*audit_id: [0-9a-f-]{36}/s;
export const INVALID_TEXT = /invalid_input: invalid input for \w+: \w+.*Retryable: fix the arguments/s;
