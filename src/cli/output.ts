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

const GAP = 2;
/** The narrowest a cut column gets (its header is cut too below its length). */
const MIN_CUT = 8;

/**
 * A table column. Ids and times are never cut: a column is either shown whole or hidden, unless it is free text
 * marked `cut`. A plain string is the column `{ name }` at priority = its position (tables drop from the right).
 */
export interface ColumnSpec {
  /** The row field; its header is the name in capitals. */
  name: string;
  /** 0: always shown. Higher numbers are hidden first when the terminal is too narrow; --wide shows every one. */
  priority?: number;
  /** Free text (a label, a note, a list, a reason): cut with … to the room left rather than hidden. */
  cut?: boolean;
  /** For a `cut` column: the width it keeps before columns of lower priority are shown (default 8). */
  min?: number;
}
export type Column = string | ColumnSpec;

interface Spec {
  name: string;
  priority: number;
  cut: boolean;
  min: number;
}

function specs(columns: readonly Column[]): Spec[] {
  return columns.map((c, i) =>
    typeof c === 'string'
      ? { name: c, priority: i, cut: false, min: MIN_CUT }
      : { name: c.name, priority: c.priority ?? i, cut: c.cut ?? false, min: c.min ?? MIN_CUT },
  );
}

/** Which columns a table shows at `max` characters, and how wide each is. */
export interface Layout {
  /** Indexes of the columns shown, in their declared order. */
  shown: number[];
  /** Width of every column (0 for a hidden one). */
  widths: number[];
  /** Names of the columns hidden, in their declared order. */
  hidden: string[];
}

/**
 * Lays out columns whose natural (widest cell) widths are `natural` in `max` characters: every priority-0 column,
 * then the others by priority while they fit whole (a `cut` column at its `min`); the first that does not fit and
 * every one after it are hidden. Then `cut` columns give way, least important first, down to their `min` and, if
 * the always-shown columns still do not fit, down to a few characters. Other columns are never cut: a line of
 * always-shown ids and times wider than `max` stays wider.
 */
export function layoutColumns(columns: readonly Column[], natural: readonly number[], max: number): Layout {
  const cols = specs(columns);
  const nat = (i: number) => natural[i] ?? 0;
  const least = (i: number) => {
    const c = cols[i];
    return c?.cut ? Math.min(nat(i), c.min) : nat(i);
  };
  const byPriority = cols
    .map((_, i) => i)
    .sort((a, b) => (cols[a]?.priority ?? 0) - (cols[b]?.priority ?? 0) || a - b);
  const shown: number[] = [];
  const room = (list: number[]) =>
    list.reduce((sum, i) => sum + least(i), 0) + GAP * Math.max(list.length - 1, 0);
  for (const i of byPriority) {
    if ((cols[i]?.priority ?? 0) > 0 && room([...shown, i]) > max) break;
    shown.push(i);
  }
  shown.sort((a, b) => a - b);
  const widths = cols.map((_, i) => (shown.includes(i) ? nat(i) : 0));
  const total = () =>
    shown.reduce((sum, i) => sum + (widths[i] ?? 0), 0) + GAP * Math.max(shown.length - 1, 0);
  const cuttable = shown
    .filter((i) => cols[i]?.cut)
    .sort((a, b) => (cols[b]?.priority ?? 0) - (cols[a]?.priority ?? 0) || b - a);
  for (const floor of [(i: number) => least(i), () => MIN_CUT]) {
    for (const i of cuttable) {
      const over = total() - max;
      if (over <= 0) break;
      const w = widths[i] ?? 0;
      widths[i] = Math.max(Math.min(w, floor(i)), w - over);
    }
  }
  return { shown, widths, hidden: cols.filter((_, i) => !shown.includes(i)).map((c) => c.name) };
}

/** The line under a table with hidden columns: what is missing and how to see it, in `max` characters if it can. */
export function hiddenNote(hidden: readonly string[], max: number): string {
  const n = `${hidden.length} column${hidden.length === 1 ? '' : 's'} hidden`;
  const named = `${n} (${hidden.join(', ')}); --wide shows them`;
  return named.length <= max ? named : `${n}; --wide shows them`;
}

export interface TableOptions {
  /** The most characters a line may take (Infinity: no limit). */
  width?: number;
  colour?: boolean;
  /** Styles a cell by column and raw value (e.g. denied in red). */
  style?: (column: string, text: string) => Style | undefined;
}

/**
 * Renders rows as an aligned text table in `width`: low-priority columns are hidden (a line under the table says
 * which, and that --wide shows them) and free-text columns cut with …; ids and times are shown whole.
 */
export function table(
  rows: Record<string, unknown>[],
  columns: readonly Column[],
  o: TableOptions = {},
): string {
  if (rows.length === 0) return '(none)\n';
  const names = specs(columns).map((c) => c.name);
  const cells = rows.map((r) => names.map((c) => cellText(r[c])));
  const natural = names.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] ?? '').length)));
  const max = o.width ?? Infinity;
  const { shown, widths, hidden } = layoutColumns(columns, natural, max);
  const colour = o.colour ?? false;
  const line = (values: string[], header: boolean) =>
    shown
      .map((i, n) => {
        const v = values[i] ?? '';
        const w = widths[i] ?? 0;
        const text = truncate(v, w);
        const padded = n === shown.length - 1 ? text : text.padEnd(w);
        if (header) return paint(padded, 'bold', colour);
        const style = o.style?.(names[i] ?? '', v);
        return style ? paint(text, style, colour) + padded.slice(text.length) : padded;
      })
      .join(' '.repeat(GAP))
      .trimEnd();
  const lines = [
    line(
      names.map((c) => c.toUpperCase()),
      true,
    ),
    ...cells.map((row) => line(row, false)),
  ];
  if (hidden.length) lines.push(paint(hiddenNote(hidden, max), 'dim', colour));
  return lines.join('\n') + '\n';
}

/** One cell of a line laid out ahead of its rows (a live tail): its text, the width it is padded to, if it may be cut. */
export interface LineCell {
  text: string;
  width: number;
  cut?: boolean;
}

/**
 * A line of cells padded to their widths and joined, fitted to `max`: when cells longer than their widths push the
 * line over, `cut` cells give way from the right, first down to their own widths (so the cell that pushed is the
 * one cut), then down to a few characters. Returns each cell as printed, padding included (the last unpadded),
 * for the caller to style and join.
 */
export function fitCells(cells: readonly LineCell[], max: number): string[] {
  const last = cells.length - 1;
  const widths = cells.map((c, i) => (i === last ? c.text.length : Math.max(c.text.length, c.width)));
  const total = () => widths.reduce((a, b) => a + b, 0) + GAP * Math.max(cells.length - 1, 0);
  for (const floor of [(c: LineCell) => c.width, () => MIN_CUT]) {
    for (let i = last; i >= 0 && total() > max; i--) {
      const c = cells[i];
      const w = widths[i] ?? 0;
      if (c?.cut) widths[i] = Math.max(Math.min(w, floor(c)), w - (total() - max));
    }
  }
  return cells.map((c, i) => {
    const text = truncate(c.text, widths[i] ?? 0);
    return i === last ? text : text.padEnd(widths[i] ?? 0);
  });
}

/** Joins cells as fitCells returned them. */
export function joinCells(cells: readonly string[]): string {
  return cells.join(' '.repeat(GAP)).trimEnd();
}

/** The width help text is wrapped to: readable on any terminal, whatever its width. */
export const HELP_WIDTH = 80;

/**
 * Words of `text` as lines of at most `width` characters (a word longer than that gets a line of its own).
 * Square brackets keep their insides together, so a usage line never breaks inside `[--since T]`.
 */
export function wrapText(text: string, width: number): string[] {
  const words = text.match(/(?:\[[^\]]*\]|[^\s[])+|\S/g) ?? [];
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.length ? lines : [''];
}

/**
 * Option help as two aligned columns, wrapped to `width`. Each entry is "flags  description" (two or more spaces
 * apart). An entry starting with spaces continues the description above: joined to it and wrapped with it, unless it
 * starts a sentence of its own (a capital letter), which then starts a line.
 */
export function alignHelp(entries: string[], width = HELP_WIDTH): string[] {
  const parsed: { flags: string; text: string }[] = [];
  for (const e of entries) {
    const previous = parsed.at(-1);
    if (/^\s/.test(e) && previous && !/^[A-Z]/.test(e.trim())) previous.text += ` ${e.trim()}`;
    else if (/^\s/.test(e)) parsed.push({ flags: '', text: e.trim() });
    else {
      const m = /^(\S(?:.*?\S)?)\s{2,}(\S.*)$/.exec(e);
      parsed.push(m ? { flags: m[1] ?? '', text: m[2] ?? '' } : { flags: '', text: e });
    }
  }
  const MAX_FLAGS = 26;
  const flagWidth = Math.min(MAX_FLAGS, Math.max(0, ...parsed.map((p) => p.flags.length)));
  const indent = ' '.repeat(2 + flagWidth + 2);
  const out: string[] = [];
  for (const p of parsed) {
    const [first = '', ...more] = wrapText(p.text, Math.max(20, width - indent.length));
    if (p.flags.length > flagWidth) out.push(`  ${p.flags}`, `${indent}${first}`);
    else out.push(`  ${p.flags.padEnd(flagWidth)}  ${first}`.trimEnd());
    out.push(...more.map((l) => indent + l));
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
