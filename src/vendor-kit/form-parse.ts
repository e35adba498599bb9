// Form bodies and query strings decoded in one pass, with hard limits checked as they are met: a hostile body is
// refused after at most `params` pairs, never after a computation that grows faster than its length.
import type { FlatForm } from './rest-api.js';

/** What a form or query may hold. Each is far above what the vendors' own APIs take, and far below what costs. */
export interface FormLimits {
  /** Parameters in all (Stripe's metadata takes 50 keys; a full PaymentIntent is well under 200 parameters). */
  params: number;
  /** Values of one name (`expand[]`, Twilio's `MediaUrl` ≤ 10, Resend's recipients ≤ 50). */
  repeats: number;
  /** Characters of a decoded name (Stripe metadata keys are ≤ 40, so `metadata[…]` ≤ 50). */
  keyChars: number;
  /** `[` groups in a name (Stripe's deepest, `line_items[0][price_data][product_data][metadata][k]`, has 5). */
  depth: number;
}

export const FORM_LIMITS: Readonly<FormLimits> = Object.freeze({
  params: 1000,
  repeats: 100,
  keyChars: 200,
  depth: 8,
});

/** A form over one of the limits; the message names the limit and is safe to show (names cut short). */
export class FormLimitError extends Error {
  override name = 'FormLimitError';
  constructor(
    readonly limit: keyof FormLimits,
    message: string,
  ) {
    super(message);
  }
}

/** A name as a message shows it: at most 40 characters, control characters dropped. */
function shown(name: string): string {
  // eslint-disable-next-line no-control-regex -- dropping control characters is the point
  const clean = name.replace(/[\x00-\x1f\x7f]/g, '');
  return clean.length > 40 ? `${clean.slice(0, 40)}…` : clean;
}

/** `[` groups in a name, stopping once past `max` (so a long name costs no more than its length). */
function bracketDepth(name: string, max: number): number {
  let n = 0;
  for (let i = name.indexOf('['); i >= 0 && n <= max; i = name.indexOf('[', i + 1)) n++;
  return n;
}

const PERCENT = 0x25;

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * One name or value as application/x-www-form-urlencoded decodes it (what URLSearchParams does): `+` is a space,
 * `%XX` a byte, a `%` without two hex digits stays as it is, and the bytes are read as UTF-8 (bad ones as U+FFFD).
 */
export function decodeFormComponent(text: string): string {
  const spaced = text.includes('+') ? text.replaceAll('+', ' ') : text;
  if (!spaced.includes('%')) return spaced;
  const bytes = Buffer.from(spaced, 'utf8');
  let w = 0;
  for (let r = 0; r < bytes.length; r++) {
    const c = bytes[r]!;
    if (c === PERCENT && r + 2 < bytes.length) {
      const hi = hexValue(bytes[r + 1] ?? -1);
      const lo = hexValue(bytes[r + 2] ?? -1);
      if (hi >= 0 && lo >= 0) {
        bytes[w++] = hi * 16 + lo;
        r += 2;
        continue;
      }
    }
    bytes[w++] = c;
  }
  return bytes.toString('utf8', 0, w);
}

/**
 * A form body or query string (without `?`) as a FlatForm: flat names (`metadata[k]` stays one key), a repeated name
 * a list in the order sent. Linear in the text's length. Throws FormLimitError at the first limit passed.
 */
export function parseForm(text: string, limits: Readonly<FormLimits> = FORM_LIMITS): FlatForm {
  const out = new Map<string, string | string[]>();
  let count = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('&', start);
    if (end < 0) end = text.length;
    if (end > start) {
      if (++count > limits.params)
        throw new FormLimitError('params', `more than ${limits.params} parameters (leash's limit)`);
      const eq = text.indexOf('=', start);
      const split = eq >= 0 && eq < end ? eq : end;
      const name = decodeFormComponent(text.slice(start, split));
      if (name.length > limits.keyChars)
        throw new FormLimitError(
          'keyChars',
          `parameter name '${shown(name)}' is longer than ${limits.keyChars} characters (leash's limit)`,
        );
      if (bracketDepth(name, limits.depth) > limits.depth)
        throw new FormLimitError(
          'depth',
          `parameter name '${shown(name)}' nests more than ${limits.depth} brackets deep (leash's limit)`,
        );
      const value = split < end ? decodeFormComponent(text.slice(split + 1, end)) : '';
      const had = out.get(name);
      if (had === undefined) out.set(name, value);
      else if (typeof had === 'string') out.set(name, [had, value]);
      else {
        if (had.length >= limits.repeats)
          throw new FormLimitError(
            'repeats',
            `parameter '${shown(name)}' is repeated more than ${limits.repeats} times (leash's limit)`,
          );
        had.push(value);
      }
    }
    start = end + 1;
  }
  // fromEntries defines own properties: a `__proto__` name is a parameter, never the object's prototype.
  return Object.fromEntries(out);
}
