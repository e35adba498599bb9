// Covers SMS segment counting (GSM-7 with its extension table, UCS-2) and per-segment prices by prefix.
import { describe, expect, it } from 'vitest';
import { countSegments, maxChars, segmentPriceMicros } from './segments.js';

describe('countSegments', () => {
  it.each([
    ['a one-character text', 'a', 'GSM-7', 1],
    ['160 GSM-7 characters', 'a'.repeat(160), 'GSM-7', 1],
    ['161 GSM-7 characters', 'a'.repeat(161), 'GSM-7', 2],
    ['306 GSM-7 characters', 'a'.repeat(306), 'GSM-7', 2],
    ['307 GSM-7 characters', 'a'.repeat(307), 'GSM-7', 3],
    ['GSM-7 accents and Greek capitals', 'Ça coute 5€? ÄÖÑÜ ΔΦΓ', 'GSM-7', 1],
    ['80 extension characters (two septets each)', '€'.repeat(80), 'GSM-7', 1],
    ['81 extension characters', '€'.repeat(81), 'GSM-7', 2],
    [
      '152 plain characters then an escape pair that cannot be split',
      'a'.repeat(152) + '{' + 'a'.repeat(10),
      'GSM-7',
      2,
    ],
    ['70 Cyrillic characters', 'ж'.repeat(70), 'UCS-2', 1],
    ['71 Cyrillic characters', 'ж'.repeat(71), 'UCS-2', 2],
    ['one emoji (two UTF-16 code units) in plain text', 'ok 👍', 'UCS-2', 1],
    ['35 emoji (70 code units)', '👍'.repeat(35), 'UCS-2', 1],
    ['36 emoji (72 code units)', '👍'.repeat(36), 'UCS-2', 2],
    ['a lower-case ç, which GSM-7 lacks', 'ç', 'UCS-2', 1],
  ])('counts %s', (_name, body, encoding, segments) => {
    expect(countSegments(body)).toEqual({ encoding, segments });
  });

  it('keeps a surrogate pair whole across a part boundary', () => {
    expect(countSegments('a'.repeat(66) + '👍' + 'a'.repeat(60)).segments).toBe(2);
    expect(countSegments('a'.repeat(66) + '👍' + 'a'.repeat(67)).segments).toBe(3);
  });

  it('states the most characters that fit in a number of segments', () => {
    expect([maxChars(1, 'GSM-7'), maxChars(3, 'GSM-7'), maxChars(1, 'UCS-2'), maxChars(3, 'UCS-2')]).toEqual([
      160, 459, 70, 201,
    ]);
  });
});

describe('segmentPriceMicros', () => {
  const prices = { default: 8300, '+4': 40_000, '+44': 45_000, '+447': 50_000 };

  it.each([
    ['+447700900123', 50_000],
    ['+442071234567', 45_000],
    ['+4915112345678', 40_000],
    ['+15551234567', 8300],
  ])('prices a segment to %s by the longest matching prefix', (to, micros) => {
    expect(segmentPriceMicros(to, prices)).toBe(micros);
  });
});
