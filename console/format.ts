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
