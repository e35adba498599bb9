// A structural diff of two policy documents: every change with the path it is at.

/** One difference; `path` is dotted (`tools.issue_refund.customers`). */
export type PolicyChange =
  | { path: string; op: 'add'; after: unknown }
  | { path: string; op: 'remove'; before: unknown }
  | { path: string; op: 'change'; before: unknown; after: unknown }
  /** A list of plain values (an allowlist) compared as a set: what left it and what joined it. */
  | { path: string; op: 'list'; removed: unknown[]; added: unknown[] };

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isPlain = (v: unknown) => v === null || ['string', 'number', 'boolean'].includes(typeof v);
const key = (v: unknown) => JSON.stringify(v);
const join = (path: string, k: string) => (path ? `${path}.${k}` : k);

/** Differences from `before` to `after`, in key order. Lists of plain values compare as sets (order is not policy). */
export function diffPolicies(before: unknown, after: unknown, path = ''): PolicyChange[] {
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => {
      const [a, b] = [before[k], after[k]];
      if (a === undefined && b === undefined) return [];
      if (a === undefined) return [{ path: join(path, k), op: 'add' as const, after: b }];
      if (b === undefined) return [{ path: join(path, k), op: 'remove' as const, before: a }];
      return diffPolicies(a, b, join(path, k));
    });
  }
  if (
    Array.isArray(before) &&
    Array.isArray(after) &&
    [before, after].every((l: unknown[]) => l.every(isPlain))
  ) {
    const inAfter = new Set(after.map(key));
    const inBefore = new Set(before.map(key));
    const removed = before.filter((v) => !inAfter.has(key(v)));
    const added = after.filter((v) => !inBefore.has(key(v)));
    return removed.length || added.length ? [{ path, op: 'list', removed, added }] : [];
  }
  if (key(before) === key(after)) return [];
  return [{ path, op: 'change', before, after }];
}

const show = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

/** One line per change: `tools.issue_refund.customers: -cus_B +cus_C`, `limits.daily_usd: 20 → 25`. */
export function formatChange(c: PolicyChange): string {
  switch (c.op) {
    case 'add':
      return `${c.path}: + ${show(c.after)}`;
    case 'remove':
      return `${c.path}: - ${show(c.before)}`;
    case 'change':
      return `${c.path}: ${show(c.before)} → ${show(c.after)}`;
    case 'list':
      return `${c.path}: ${[...c.removed.map((v) => `-${show(v)}`), ...c.added.map((v) => `+${show(v)}`)].join(' ')}`;
  }
}
