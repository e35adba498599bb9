// Numbers and times as the console writes them. Money arrives as integer micro-USD.

/** `$1.25`, or four decimals under a cent (`$0.0083`); `–` when there is no amount. */
export function usd(micros: number | null | undefined): string {
  if (micros === null || micros === undefined) return '–';
  const v = micros / 1e6;
  return '$' + v.toFixed(v !== 0 && Math.abs(v) < 0.01 ? 4 : 2);
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** Local wall-clock time with milliseconds: `14:03:07.120`. */
export function clock(iso: string): string {
  const d = new Date(iso);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Local date and time, then the ISO stamp as sent. */
export const fullTime = (iso: string): string => `${new Date(iso).toLocaleString()} (${iso})`;

/** How long until a key or request expires, in words. */
export function untilText(iso: string | null): string {
  if (!iso) return 'no expiry';
  const ms = new Date(iso).getTime() - Date.now();
  if (ms <= 0) return 'expired';
  const m = Math.round(ms / 60000);
  if (m < 60) return `expires in ${m} min`;
  const hours = Math.floor(m / 60);
  return hours < 48 ? `expires in ${hours} h ${m % 60} min` : `expires ${new Date(iso).toLocaleDateString()}`;
}

/** `1 call`, `2 calls`. */
export const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** `part` as a CSS percentage of `whole`, clamped to 0–100%. */
export const pct = (part: number, whole: number): string =>
  `${Math.max(0, Math.min(100, (part / whole) * 100))}%`;

/**
 * A vendor amount in minor units as money in its currency: `$40.00`, `€12.50`, `¥500` (the currency's own number of
 * decimals). A code the browser does not know reads `4000 XYZ (minor units)`, as sent.
 */
export function money(minor: number, currency: string): string {
  const code = currency.toUpperCase();
  try {
    const f = new Intl.NumberFormat('en-US', { style: 'currency', currency: code });
    return f.format(minor / 10 ** (f.resolvedOptions().maximumFractionDigits ?? 2));
  } catch {
    return `${minor} ${code} (minor units)`;
  }
}

/** How long before `now` a time was, in one short phrase: `4 s ago`, `12 min ago`, `3 h ago`, `2 d ago`. */
export function ago(iso: string, now: string): string {
  const s = Math.max(0, Math.round((new Date(now).getTime() - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 172_800) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

/** A share as a whole percentage (`0%`, `<1%` for a little, `57%`, `100%`, past 100 when over). */
export function percent(part: number, whole: number): string {
  const p = (part / whole) * 100;
  return p > 0 && p < 1 ? '<1%' : `${Math.round(p)}%`;
}
