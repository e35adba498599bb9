import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { PolicyFileError } from './compile.js';

/** Reads a policy file (YAML or JSON; JSON is YAML) into a raw document. Throws PolicyFileError. */
export async function readPolicyFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new PolicyFileError(
      `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}`,
    );
  }
  return parsePolicyText(text, path);
}

export function parsePolicyText(text: string, where = 'policy'): unknown {
  try {
    return parseYaml(text, { uniqueKeys: true, maxAliasCount: 0 }) as unknown;
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : 'unparseable';
    throw new PolicyFileError(`${where} is not valid YAML/JSON: ${message}`);
  }
}
