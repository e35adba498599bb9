import type { BudgetWindow } from '../db/schema.js';
import type { CompiledPolicy } from '../policy/compile.js';

/** Start of the UTC day / hour containing `now`. */
export function dayStart(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
}
export function hourStart(now: Date): Date {
  return new Date(Math.floor(now.getTime() / 3_600_000) * 3_600_000);
}

export const keyScope = (keyId: string) => `key:${keyId}`;
export const policyScope = (policy: string) => `policy:${policy}`;

/**
 * The windows one call must reserve in, in the one fixed lock order every caller uses
 * (key before policy, USD before requests) so concurrent admissions never deadlock.
 */
export function windowsFor(
  policy: CompiledPolicy,
  keyId: string,
  now: Date,
  countsAsRequest: boolean,
): BudgetWindow[] {
  const day = dayStart(now).toISOString();
  const hour = hourStart(now).toISOString();
  const l = policy.limits;
  const out: BudgetWindow[] = [];
  if (l.perKeyDailyMicros !== undefined)
    out.push({ scope: keyScope(keyId), kind: 'usd_day', window_start: day, cap: l.perKeyDailyMicros });
  if (countsAsRequest && l.perKeyHourlyRequests !== undefined) {
    out.push({
      scope: keyScope(keyId),
      kind: 'requests_hour',
      window_start: hour,
      cap: l.perKeyHourlyRequests,
    });
  }
  if (l.dailyMicros !== undefined)
    out.push({ scope: policyScope(policy.name), kind: 'usd_day', window_start: day, cap: l.dailyMicros });
  if (countsAsRequest && l.hourlyRequests !== undefined) {
    out.push({
      scope: policyScope(policy.name),
      kind: 'requests_hour',
      window_start: hour,
      cap: l.hourlyRequests,
    });
  }
  return out;
}
