// Building elements: every text and attribute a person may read passes displayText, the same function the CLI and
// the approval page use, so bidi overrides and other hidden characters read as ⟨U+202E⟩ markers. Text is set with
// textContent and attributes with setAttribute: nothing here (or anywhere in console/) parses a value as HTML.
import { displayText } from '../src/audit/display-text.js';

/** A value shown to a person, as text with its hidden characters made visible. */
export const shown = (value: string | number): string => displayText(String(value));

/** Sets an element's text (shown). */
export function setText(el: Element, value: string | number): void {
  el.textContent = shown(value);
}

/** The page's element with this id, checked to be of the expected kind (the markup is pages.ts). */
export function byId<T extends Element>(id: string, kind: abstract new () => T): T {
  const el = document.getElementById(id);
  if (!(el instanceof kind)) throw new Error(`the console page has no ${kind.name} #${id}`);
  return el;
}

type Empty = null | undefined | false;
export type Child = Node | string | number | Empty | Child[];
/**
 * Attributes: `class`, `text` (the element's text), `on<event>` (a listener), `data-*` (lookup keys, kept as
 * sent), anything else an attribute (`true` for a bare one); an empty value leaves the attribute out.
 */
export type Attrs = Record<string, string | number | boolean | null | undefined | ((event: Event) => void)>;

/** One element, its attributes and children; strings and numbers become (shown) text nodes. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...kids: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = String(v);
    else if (k === 'text') setText(el, v === true ? '' : v);
    else el.setAttribute(k, v === true ? '' : k.startsWith('data-') ? String(v) : shown(v));
  }
  append(el, kids);
  return el;
}

function append(el: Element, kids: Child[]): void {
  for (const kid of kids) {
    if (kid === undefined || kid === null || kid === false) continue;
    if (Array.isArray(kid)) append(el, kid);
    else el.append(kid instanceof Node ? kid : shown(kid));
  }
}
