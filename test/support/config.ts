// Loads config as the `leash` command does: the given environment, and the vendors the real tool catalog declares.
import { loadConfig, type Config } from '../../src/config/config.js';
import { catalogVendors } from '../../tools/index.js';

/**
 * `loadConfig(env, catalogVendors)`, as `leash` builds it — except that a call waits up to a minute for a free
 * database connection (LEASH_DB_POOL_WAIT_MS, 5 s in production) unless the test says otherwise: on a busy machine
 * 200 concurrent calls can queue longer than 5 s, and a test of exact caps is not a test of that bound.
 */
export function catalogConfig(env: NodeJS.ProcessEnv = {}): Config {
  return loadConfig({ LEASH_DB_POOL_WAIT_MS: '60000', ...env }, catalogVendors);
}
