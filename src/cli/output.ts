// Terminal output: tables that fit the terminal, colour only where it is wanted, aligned help columns.
import { displayValue } from '../audit/display-text.js';
import type { Io } from './io.js';

/** Colour on a TTY only, never with NO_COLOR (https://no-color.org) or TERM=dumb. */
export function colourWanted(io: Pick<Io, 'isTTY' | 'env'>): boolean {
  return io.isTTY && !io.env.NO_COLOR && io.env.TERM !== 'dumb';
}

const STYLES = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39] } as const;
export type Style = keyof typeof STYLES;

/** Wraps text in an ANSI style when `on`. */
export function paint(text: string, style: Style, on: boolean): string {
  if (!on) return text;
  const [open, close] = STYLES[style];
  return `\u001b[${open}m${text}\u001b[${close}m`;
}

/** The width a table may take: the terminal's, or COLUMNS; unlimited when piped (scripts read every byte). */
export function outputWidth(io: Pick<Io, 'isTTY' | 'env' | 'columns'>, wide: boolean): number {
  if (wide) return Infinity;
  const fromEnv = Number(io.env.COLUMNS);
  if (Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  if (io.columns && io.columns > 0) return io.columns;
  return io.isTTY ? 80 : Infinity;
}

/**
 * One value as a table cell: line breaks and tabs as spaces, every other hidden character (bidi overrides, escapes)
 * as its visible marker, so a label cannot reorder or recolour the table around it.
 */
export function cellText(v: unknown): string {
  return displayValue(typeof v === 'string' ? v.replace(/[\r\n\t]/g, ' ') : v);
}

/** Cuts text to `width` characters, marking the cut with an ellipsis. */
export function truncate(text: string, width: number): string {
  if (text.length <= width) return text;
  return width <= 1 ? '…'.slice(0, width) : text.slice(0, width - 1) + '…';
}

const MIN_COLUMN = 6;
const GAP = 2;

/** Column widths that fit `max`: the widest column gives way first, down to a few characters. */
export function fitWidths(natural: number[], max: number): number[] {
  const widths = [...natural];
  const total = () => widths.reduce((a, b) => a + b, 0) + GAP * Math.max(widths.length - 1, 0);
  while (total() > max) {
    let widest = 0;
    for (let i = 1; i < widths.length; i++) if ((widths[i] ?? 0) > (widths[widest] ?? 0)) widest = i;
    const w = widths[widest] ?? 0;
    if (w <= MIN_COLUMN) break;
    widths[widest] = Math.max(MIN_COLUMN, w - (total() - max));
  }
  return widths;
}

export interface TableOptions {
  /** The most characters a line may take (Infinity: no limit). */
  width?: number;
  colour?: boolean;
  /** Styles a cell by column and raw value (e.g. denied in red). */
  style?: (column: string, text: string) => Style | undefined;
}

/** Renders rows as an aligned text table; the widest column is truncated with … to fit `width`. */
export function table(rows: Record<string, unknown>[], columns: string[], o: TableOptions = {}): string {
  if (rows.length === 0) return '(none)\n';
  const cells = rows.map((r) => columns.map((c) => cellText(r[c])));
  const natural = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] ?? '').length)));
  const widths = fitWidths(natural, o.width ?? Infinity);
  const colour = o.colour ?? false;
  const line = (values: string[], header: boolean) =>
    values
      .map((v, i) => {
        const w = widths[i] ?? 0;
        const text = truncate(v, w);
        const padded = i === values.length - 1 ? text : text.padEnd(w);
        if (header) return paint(padded, 'bold', colour);
        const style = o.style?.(columns[i] ?? '', v);
        return style ? paint(text, style, colour) + padded.slice(text.length) : padded;
      })
      .join(' '.repeat(GAP))
      .trimEnd();
  return (
    [
      line(
        columns.map((c) => c.toUpperCase()),
        true,
      ),
      ...cells.map((row) => line(row, false)),
    ].join('\n') + '\n'
  );
}

/**
 * Option help as two aligned columns. Each entry is "flags  description" (two or more spaces apart);
 * an entry starting with spaces continues the description above.
 */
export function alignHelp(entries: string[]): string[] {
  const parsed = entries.map((e) => {
    if (/^\s/.test(e)) return { flags: '', text: e.trim() };
    const m = /^(\S(?:.*?\S)?)\s{2,}(\S.*)$/.exec(e);
    return m ? { flags: m[1] ?? '', text: m[2] ?? '' } : { flags: '', text: e };
  });
  const MAX_FLAGS = 26;
  const width = Math.min(MAX_FLAGS, Math.max(0, ...parsed.map((p) => p.flags.length)));
  const out: string[] = [];
  for (const p of parsed) {
    if (p.flags.length > width) out.push(`  ${p.flags}`, `  ${''.padEnd(width)}  ${p.text}`);
    else out.push(`  ${p.flags.padEnd(width)}  ${p.text}`.trimEnd());
  }
  return out;
}

/** Edit distance with adjacent swaps ("kyes" is one step from "keys"), for "did you mean". */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number) => d[i]?.[j] ?? Infinity;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, at(i - 2, j - 2) + 1);
      const row = d[i];
      if (row) row[j] = v;
    }
  }
  return at(a.length, b.length);
}

/** The closest of `candidates` to a mistyped word, when it is close enough to be what was meant. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 2 ? 0.5 : editDistance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return bestDistance <= Math.max(1, Math.floor((best?.length ?? 0) / 3)) ? best : undefined;
}

/** An object's own keys in snake_case (`dataDir` → `data_dir`): one key style in every `--json`. */
export function snakeKeys(o: object): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(o).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v as unknown]),
  );
}
