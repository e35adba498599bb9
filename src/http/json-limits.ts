// JSON request bodies are measured as text before anything parses or walks them: nesting depth and how many array
// items and object members they hold, in one pass with no recursion, stopping at the first limit passed.

export interface JsonLimits {
  /** Nested arrays and objects (MCP's envelope adds 3 to a tool's arguments; the pipeline takes 32 in arguments). */
  depth: number;
  /** Array items and object members in all, the envelope's included (Resend takes ≤ 50 recipients per field). */
  items: number;
}

/** The same bound as a form's parameters (src/vendor-kit/form-parse.ts), with room for an MCP request's envelope. */
export const JSON_LIMITS: Readonly<JsonLimits> = Object.freeze({ depth: 64, items: 1000 });

/**
 * The first limit JSON text passes, as a sentence naming it; undefined when within them. Strings are skipped;
 * items are counted as the separators between them plus one per container, so an empty container counts one.
 */
export function jsonOverLimit(text: string, limits: Readonly<JsonLimits> = JSON_LIMITS): string | undefined {
  let depth = 0;
  let items = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      // A backslash escapes the next character.
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limits.depth)
        return `request body nests deeper than ${limits.depth} arrays or objects (leash's limit)`;
      if (++items > limits.items) return tooMany(limits);
    } else if (c === 0x5d || c === 0x7d) depth--;
    else if (c === 0x2c && ++items > limits.items) return tooMany(limits);
  }
  return undefined;
}

const tooMany = (limits: Readonly<JsonLimits>) =>
  `request body holds more than ${limits.items} array items and object members (leash's limit)`;
