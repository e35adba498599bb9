// Covers displayText: hidden characters in agent-supplied text become visible ⟨U+…⟩ markers; visible text is kept.
import { describe, expect, it } from 'vitest';
import { displayText, displayValue, HIDDEN_CHARACTERS, visibleMarker } from './display-text.js';

describe('displayText', () => {
  it.each([
    [
      'bidi embeddings and overrides',
      '\u202A\u202B\u202C\u202D\u202E',
      '⟨U+202A⟩⟨U+202B⟩⟨U+202C⟩⟨U+202D⟩⟨U+202E⟩',
    ],
    ['bidi isolates', '\u2066\u2067\u2068\u2069', '⟨U+2066⟩⟨U+2067⟩⟨U+2068⟩⟨U+2069⟩'],
    ['direction marks', '\u200E\u200F\u061C', '⟨U+200E⟩⟨U+200F⟩⟨U+061C⟩'],
    ['zero-width characters and the BOM', '\u200B\u200C\u200D\uFEFF', '⟨U+200B⟩⟨U+200C⟩⟨U+200D⟩⟨U+FEFF⟩'],
    [
      'C0 controls, DEL and C1 controls',
      '\u0000\t\n\r\u001B\u007F\u0085\u009B',
      '⟨U+0000⟩⟨U+0009⟩⟨U+000A⟩⟨U+000D⟩⟨U+001B⟩⟨U+007F⟩⟨U+0085⟩⟨U+009B⟩',
    ],
    ['line and paragraph separators', '\u2028\u2029', '⟨U+2028⟩⟨U+2029⟩'],
    ['the soft hyphen and word joiner', 'pay\u00ADpal\u2060', 'pay⟨U+00AD⟩pal⟨U+2060⟩'],
    ['tag characters (invisible ASCII)', 'ok\u{E0041}\u{E0042}', 'ok⟨U+E0041⟩⟨U+E0042⟩'],
  ])('shows %s as markers', (_what, raw, shown) => {
    expect(displayText(raw)).toBe(shown);
  });

  it('turns a subject that reads as something else into what it is', () => {
    // Rendered raw, this reads "Invoice for gpj.exe": the override reverses what follows it.
    expect(displayText('Invoice for \u202Eexe.jpg')).toBe('Invoice for ⟨U+202E⟩exe.jpg');
  });

  it.each([
    ['plain ASCII', 'send_email to pat@acme.com: $10.00'],
    ['accents, CJK and emoji', 'Café 東京 🎉 👍🏽'],
    ['right-to-left text without controls', 'שלום مرحبا'],
    ['a 3,000-character unbroken value, whole', 'W'.repeat(3000)],
    ['markers typed as text', '⟨U+202E⟩'],
  ])('keeps %s unchanged', (_what, text) => {
    expect(displayText(text)).toBe(text);
  });

  it('keeps no hidden character in its output', () => {
    let all = '';
    for (let cp = 0; cp <= 0x10ffff; cp++) if (cp < 0xd800 || cp > 0xdfff) all += String.fromCodePoint(cp);
    const out = displayText(all);
    expect(out.match(HIDDEN_CHARACTERS)).toBeNull();
    expect(out).toContain('⟨U+202E⟩');
  });

  it('writes a marker as U+ and at least four upper-case hex digits', () => {
    expect(visibleMarker('\u0007')).toBe('⟨U+0007⟩');
    expect(visibleMarker('\u{E007F}')).toBe('⟨U+E007F⟩');
  });
});

describe('displayValue', () => {
  it('shows null as the fallback, dates as ISO, and other values as JSON with markers', () => {
    expect(displayValue(null)).toBe('-');
    expect(displayValue(undefined, '?')).toBe('?');
    expect(displayValue(new Date('2026-01-02T03:04:05Z'))).toBe('2026-01-02T03:04:05.000Z');
    expect(displayValue({ subject: 'a\u2028b\u202E' })).toBe('{"subject":"a⟨U+2028⟩b⟨U+202E⟩"}');
    expect(displayValue('a\u001B[31mred')).toBe('a⟨U+001B⟩[31mred');
  });
});
