// Reading a policy file for the CLI: exit codes for a missing or invalid file, and warnings about unsafe defaults.
import { access } from 'node:fs/promises';
import { PolicyFileError, validatePolicy } from '../policy/compile.js';
import { readPolicyFile } from '../policy/file.js';
import type { PolicyFile } from '../policy/schema.js';
import { ruleSpecs } from '../pipeline/tool.js';
import { CliError, EXIT } from './command.js';
import { catalog } from './runtime.js';

/** Reads and validates a policy file; a missing file is "not found" (3), an invalid one a failure (1). */
export async function loadPolicyFile(path: string): Promise<PolicyFile> {
  try {
    await access(path);
  } catch {
    throw new CliError(`no policy file ${path}`, EXIT.notFound);
  }
  try {
    return validatePolicy(await readPolicyFile(path), ruleSpecs(catalog));
  } catch (error) {
    if (error instanceof PolicyFileError)
      throw new CliError(`${path} is not a valid policy:\n${error.message}`, EXIT.failure);
    throw error;
  }
}

/** Safe defaults said out loud: a tool that moves money with neither a per-call limit nor a daily cap. */
export function policyWarnings(doc: PolicyFile): string[] {
  const capped = doc.limits.daily_usd !== undefined || doc.limits.per_key_daily_usd !== undefined;
  if (capped) return [];
  return Object.entries(doc.tools)
    .filter(([tool, rule]) => {
      const def = catalog.tools.get(tool);
      return def?.rules.includes('max_amount_usd') && rule?.max_amount_usd === undefined;
    })
    .map(
      ([tool]) =>
        `tools.${tool} moves money with no per-call limit (max_amount_usd) and the policy has no daily cap (limits.daily_usd or per_key_daily_usd)`,
    );
}
