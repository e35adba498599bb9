// Also bundled into the console's browser code: console/tsconfig.json checks it without Node's types, so it stays
// strings and patterns only.
/**
 * Characters that show nothing yet change how the text around them reads: C0 and C1 controls (Cc: NUL, ESC,
 * newline, DEL, …), format characters (Cf: the bidi embeddings, overrides and isolates U+202A–U+202E and
 * U+2066–U+2069, the marks U+200E / U+200F / U+061C, zero-width space and joiners U+200B–U+200D, U+FEFF, the soft
 * hyphen, tag characters) and the line and paragraph separators. The console's browser code (console/dom.ts)
 * imports this module too, so the browser, the CLI and the approval page mark the same characters.
 */
export const HIDDEN_CHARACTERS = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/** A hidden character as visible text: U+202E becomes `⟨U+202E⟩`. */
export function visibleMarker(char: string): string {
  const hex = (char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
  return `⟨U+${hex}⟩`;
}

/**
 * Text as an operator should read it: every hidden character (HIDDEN_CHARACTERS) shown as its marker, so agent-
 * or vendor-supplied text can neither reorder what is shown around it nor hide something in plain sight, nor
 * send a terminal an escape sequence. For display only: stored and exported values stay as they were.
 */
export function displayText(text: string): string {
  return text.replace(HIDDEN_CHARACTERS, visibleMarker);
}

/** displayText for a value of any type: null and undefined as `fallback`, objects as JSON. */
export function displayValue(value: unknown, fallback = '-'): string {
  if (value === null || value === undefined) return fallback;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'string') return displayText(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  return displayText(JSON.stringify(value) ?? fallback);
}
