import { canonicalJson } from '../policy/compile.js';
import type { AuditHasher } from './audit-hash.js';

/** Longest string kept per value; longer ones are cut and marked. */
export const MAX_STRING_CHARS = 2048;
/** Most a row's request may take as JSON; a larger one is stored as a summary with its hash. */
export const MAX_REQUEST_BYTES = 12 * 1024;
/** Most a row's metadata may take as JSON (request + metadata stay within 16 KB). */
export const MAX_METADATA_BYTES = 4 * 1024;
/** Longest tool name stored (an unknown tool's name is whatever the agent sent). */
export const MAX_NAME_CHARS = 128;

const MAX_DEPTH = 32;
const MAX_KEY_CHARS = 256;
// Walking stops once this much has been seen: the value will be summarised anyway.
const WALK_BUDGET_CHARS = 4 * MAX_REQUEST_BYTES;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** True when `safeText` would change nothing but length (no NUL, no lone surrogate). */
function storable(s: string): boolean {
  LONE_SURROGATE.lastIndex = 0;
  return !s.includes('\0') && !LONE_SURROGATE.test(s);
}

export interface SafeText {
  text: string;
  altered: boolean;
}

/**
 * Makes agent- or vendor-controlled text storable in a Postgres text or jsonb value: NUL becomes the six
 * characters `\u0000`, a lone surrogate becomes U+FFFD, and text over `max` characters is cut and marked.
 */
export function safeText(s: string, max = MAX_STRING_CHARS): SafeText {
  let text = s;
  let altered = false;
  if (!storable(text)) {
    text = text.split('\0').join('\\u0000').replace(LONE_SURROGATE, '\ufffd');
    altered = true;
  }
  if (text.length > max) {
    let cut = max;
    const last = text.charCodeAt(cut - 1);
    if (last >= 0xd800 && last <= 0xdbff) cut--; // never split a surrogate pair
    text = `${text.slice(0, cut)}…[truncated, ${s.length} chars]`;
    altered = true;
  }
  return { text, altered };
}

/** `safeText` for an optional column. */
export function safeColumn(s: string | null | undefined, max = MAX_STRING_CHARS): string | null {
  return typeof s === 'string' ? safeText(s, max).text : null;
}

class TooLarge extends Error {
  override name = 'TooLarge';
}

interface Walk {
  altered: boolean;
  seen: number;
}

function clean(value: unknown, depth: number, w: Walk): unknown {
  if (typeof value === 'string') {
    w.seen += value.length;
    if (w.seen > WALK_BUDGET_CHARS) throw new TooLarge();
    const t = safeText(value);
    if (t.altered) w.altered = true;
    return t.text;
  }
  if (value === null || typeof value === 'boolean') return value;
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object') return undefined; // functions, symbols, undefined: JSON drops them too
  if (depth >= MAX_DEPTH) {
    w.altered = true;
    return '[too deep]';
  }
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (Array.isArray(value)) {
    w.seen += value.length;
    if (w.seen > WALK_BUDGET_CHARS) throw new TooLarge();
    return value.map((v) => clean(v, depth + 1, w) ?? null);
  }
  return cleanObject(value, depth, w);
}

function cleanObject(value: object, depth: number, w: Walk): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    w.seen += k.length + 1;
    if (w.seen > WALK_BUDGET_CHARS) throw new TooLarge();
    const key = safeText(k, MAX_KEY_CHARS);
    if (key.altered) w.altered = true;
    const c = clean(v, depth + 1, w);
    if (c !== undefined) out[key.text] = c;
  }
  return out;
}

/**
 * The audit hash (HMAC-SHA256 under the audit key, hex) of a value's canonical JSON (sorted keys), so a cut value
 * can still be matched to its original by whoever holds the key.
 */
export function sha256Of(value: unknown, h: AuditHasher): string {
  let json: string;
  try {
    json = canonicalJson(value);
  } catch {
    json = String(value); // a cycle or absurd depth: hash what can be hashed rather than fail the audit write
  }
  return h.hash(json);
}

export interface SafeJson {
  /** The stored form: the cleaned value, or a summary when it was too large. */
  value: Record<string, unknown>;
  /** True when anything was escaped, cut or summarised. */
  altered: boolean;
  /** Audit hash (keyed sha-256) of the canonical JSON of the value as given (before any change); set when altered. */
  sha256?: string;
}

/**
 * Makes an object (a request, metadata) safe for a jsonb column whatever it holds: strings pass `safeText`,
 * depth is bounded, and if the JSON would exceed `maxBytes` the value becomes `{ _truncated, bytes, sha256, keys }`.
 */
export function safeJson(
  value: Record<string, unknown>,
  h: AuditHasher,
  maxBytes = MAX_REQUEST_BYTES,
): SafeJson {
  const w: Walk = { altered: false, seen: 0 };
  let obj: Record<string, unknown>;
  try {
    obj = cleanObject(value, 0, w);
  } catch (error) {
    if (!(error instanceof TooLarge)) throw error;
    return summary(value, h);
  }
  if (Buffer.byteLength(JSON.stringify(obj)) > maxBytes) return summary(value, h);
  return w.altered
    ? { value: obj, altered: true, sha256: sha256Of(value, h) }
    : { value: obj, altered: false };
}

function summary(value: Record<string, unknown>, h: AuditHasher): SafeJson {
  const sha256 = sha256Of(value, h);
  let bytes: number | null = null;
  try {
    bytes = Buffer.byteLength(canonicalJson(value));
  } catch {
    // unmeasurable (a cycle): leave bytes null
  }
  const keys = Object.keys(value)
    .slice(0, 20)
    .map((k) => safeText(k, 64).text);
  return { value: { _truncated: true, bytes, sha256, keys }, altered: true, sha256 };
}
