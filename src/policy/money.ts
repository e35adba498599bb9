/** Currencies whose minor unit is not 1/100 (ISO 4217, as payment processors list them). */
const ZERO_DECIMAL = new Set([
  'BIF',
  'CLP',
  'DJF',
  'GNF',
  'JPY',
  'KMF',
  'KRW',
  'MGA',
  'PYG',
  'RWF',
  'UGX',
  'VND',
  'VUV',
  'XAF',
  'XOF',
  'XPF',
]);
const THREE_DECIMAL = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

export const MICROS_PER_USD = 1_000_000;

/** Decimal places of a currency's minor unit. */
export function minorUnitExponent(currency: string): number {
  const c = currency.toUpperCase();
  if (ZERO_DECIMAL.has(c)) return 0;
  if (THREE_DECIMAL.has(c)) return 3;
  return 2;
}

/**
 * Converts a vendor amount (minor units of `currency`) to micro-USD, rounding up so caps stay conservative.
 * Returns undefined when no rate is configured: the caller must deny, never guess.
 */
export function toMicroUsd(
  minor: number,
  currency: string,
  rates: Readonly<Record<string, number>>,
): number | undefined {
  const c = currency.toUpperCase();
  const rate = c === 'USD' ? 1 : rates[c];
  if (rate === undefined || !Number.isFinite(rate) || rate <= 0) return undefined;
  const exponent = minorUnitExponent(c);
  if (c === 'USD') return minor * 10 ** (6 - exponent);
  return Math.ceil((minor * rate * MICROS_PER_USD) / 10 ** exponent - 1e-9);
}

/** USD (a decimal number from a policy file) to integer micro-USD. */
export function usdToMicros(usd: number): number {
  return Math.round(usd * MICROS_PER_USD);
}

/** micro-USD as "$1.234567" trimmed to cents where exact, e.g. "$0.30", "$0.0083". */
export function formatUsd(micros: number): string {
  const sign = micros < 0 ? '-' : '';
  const abs = Math.abs(micros);
  const dollars = Math.floor(abs / MICROS_PER_USD);
  let frac = String(abs % MICROS_PER_USD)
    .padStart(6, '0')
    .replace(/0+$/, '');
  if (frac.length < 2) frac = frac.padEnd(2, '0');
  return `${sign}$${dollars}.${frac}`;
}

/** A dollar amount an operator typed (a flag, a query parameter) that is not one. */
export class UsdInputError extends Error {
  override name = 'UsdInputError';
  constructor(
    readonly field: string,
    readonly input: string,
  ) {
    super(
      `${field}: expected dollars such as 100, 0.30 or $0.0083 (up to 6 decimal places, below $1,000,000,000); ` +
        `got '${input.length > 40 ? `${input.slice(0, 40)}…` : input}'`,
    );
  }
}

const USD_TEXT = /^\$?(\d{1,9})(?:\.(\d{0,6}))?$/;

/**
 * Dollars as written ("100", "0.30", "$0.0083") to integer micro-USD, exactly (no float rounding). The one parser
 * for dollar strings: no exponents, signs, separators or more than 6 decimals, and below $1e9 so micros stay exact.
 */
export function parseUsd(input: string, field: string): number {
  const m = USD_TEXT.exec(input.trim());
  if (!m) throw new UsdInputError(field, input);
  return Number(m[1]) * MICROS_PER_USD + Number((m[2] ?? '').padEnd(6, '0'));
}
