// GSM 03.38 basic character set (ESC 0x1B left out: it only introduces extension characters).
const GSM_BASIC = new Set(
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?' +
    '¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà',
);
// The extension table: each costs two septets (ESC + the character).
const GSM_EXTENDED = new Set('\f^{}\\[~]|€');

export interface SegmentCount {
  encoding: 'GSM-7' | 'UCS-2';
  segments: number;
}

/** Packs units into parts of `perPart` without splitting one (an escape pair or a surrogate pair). */
function pack(units: readonly number[], single: number, perPart: number): number {
  const total = units.reduce((a, b) => a + b, 0);
  if (total <= single) return 1;
  let parts = 1;
  let used = 0;
  for (const u of units) {
    if (used + u > perPart) {
      parts++;
      used = 0;
    }
    used += u;
  }
  return parts;
}

/**
 * SMS segments for a body as carriers bill it: GSM-7 160 in one segment or 153 per part (extension
 * characters take two septets); anything outside GSM-7 goes as UCS-2, 70 or 67 UTF-16 code units per part.
 */
export function countSegments(body: string): SegmentCount {
  const chars = [...body];
  if (chars.every((c) => GSM_BASIC.has(c) || GSM_EXTENDED.has(c))) {
    return {
      encoding: 'GSM-7',
      segments: pack(
        chars.map((c) => (GSM_EXTENDED.has(c) ? 2 : 1)),
        160,
        153,
      ),
    };
  }
  return {
    encoding: 'UCS-2',
    segments: pack(
      chars.map((c) => c.length),
      70,
      67,
    ),
  };
}

/** The most characters that fit in `segments`: GSM-7 text, or UCS-2 code units for anything else. */
export function maxChars(segments: number, encoding: SegmentCount['encoding']): number {
  if (encoding === 'GSM-7') return segments === 1 ? 160 : segments * 153;
  return segments === 1 ? 70 : segments * 67;
}

// Config always sets `default`; this only guards a Pricing built by hand.
const FALLBACK_SEGMENT_MICROS = 8300;

/** micro-USD per segment to `to`: the longest matching "+<prefix>" in the price map, else `default`. */
export function segmentPriceMicros(to: string, prices: Readonly<Record<string, number>>): number {
  let best: string | undefined;
  for (const prefix of Object.keys(prices)) {
    if (prefix.startsWith('+') && to.startsWith(prefix) && prefix.length > (best?.length ?? 0)) best = prefix;
  }
  return prices[best ?? 'default'] ?? FALLBACK_SEGMENT_MICROS;
}
