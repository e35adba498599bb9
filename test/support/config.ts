// Loads config as the `leash` command does: the given environment, and the vendors the real tool catalog declares.
import { loadConfig, type Config } from '../../src/config/config.js';
import { catalogVendors } from '../../tools/index.js';

/** `loadConfig(env, catalogVendors)`, as `leash` builds it. */
export function catalogConfig(env: NodeJS.ProcessEnv = {}): Config {
  return loadConfig(env, catalogVendors);
}
