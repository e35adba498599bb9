// The Spend panel: today's spend per policy and per agent as bars against their caps (settled, then reserved),
// and the last seven UTC days as columns scaled to the busiest one.
import { byId, h } from '../dom.js';
import { pct, plural, usd } from '../format.js';
import type { DaySpend, Spend, SpendRow } from '../types.js';

interface BarValues {
  cost: number;
  reserved: number;
  cap: number | null;
  /** What an uncapped bar is scaled to: the largest in its list. */
  max: number;
  note: string;
}

function bar(label: string, o: BarValues): HTMLElement {
  const scale = o.cap || o.max || 1;
  const spent = h('span', { class: 'fill spent' });
  const reserved = h('span', { class: 'fill reserved' });
  spent.style.width = pct(o.cost, scale);
  reserved.style.width = pct(o.reserved, scale);
  const used = o.cost + o.reserved;
  const value =
    usd(used) + (o.cap ? ` of ${usd(o.cap)}` : '') + (o.reserved ? ` (${usd(o.reserved)} reserved)` : '');
  return h(
    'div',
    { class: `bar${o.cap && used >= o.cap ? ' full' : ''}`, 'data-name': label },
    h(
      'div',
      { class: 'bar-head' },
      h('span', { class: 'bar-label', title: label, text: label }),
      h('span', { class: 'bar-value', text: value }),
    ),
    h('div', { class: 'track', 'aria-hidden': 'true' }, spent, reserved),
    o.note ? h('div', { class: 'bar-note', text: o.note }) : null,
  );
}

// `held_micros` is the wire name (leash spend --json, /admin/spend) of cost + reserved: money used, not a held call.
const maxUsed = (list: { held_micros: number }[]) => Math.max(1, ...list.map((r) => r.held_micros));
const calls = (r: SpendRow) => `${plural(r.requests, 'call')}, ${r.denied} denied`;
const noneToday = () => [h('p', { class: 'empty', text: 'No calls today.' })];

/** Bars for the rows that name a group (a policy or an agent). */
function bars<R extends SpendRow>(rows: R[], note: (r: R) => string): HTMLElement[] {
  const named = rows.flatMap((r) => (r.group === null ? [] : [{ ...r, group: r.group }]));
  const max = maxUsed(named);
  return named.map((r) =>
    bar(r.group, { cost: r.cost_micros, reserved: r.reserved_micros, cap: r.cap_micros, max, note: note(r) }),
  );
}

function day(d: DaySpend, max: number): HTMLElement {
  const date = new Date(`${d.day}T00:00:00Z`);
  const name = date.toLocaleDateString([], { weekday: 'short', timeZone: 'UTC' });
  const full = date.toLocaleDateString([], {
    weekday: 'long',
    month: 'long',
    day: 'numeric',
    timeZone: 'UTC',
  });
  const spent = h('span', { class: 'fill spent' });
  const reserved = h('span', { class: 'fill reserved' });
  spent.style.height = pct(d.cost_micros, max);
  reserved.style.height = pct(d.reserved_micros, max);
  const summary = `${full}: ${usd(d.held_micros)}, ${plural(d.requests, 'call')}`;
  return h(
    'div',
    { class: 'day', 'data-day': d.day, title: summary },
    h('span', { class: 'sr-only', text: summary }),
    h('span', { class: 'day-value', 'aria-hidden': 'true', text: d.held_micros ? usd(d.held_micros) : '' }),
    h('span', { class: 'column', 'aria-hidden': 'true' }, reserved, spent),
    h('span', { class: 'day-name', 'aria-hidden': 'true', text: name }),
  );
}

export function renderSpend(s: Spend): void {
  const policies = bars(s.policies, (r) => calls(r) + (r.cap_micros ? '' : ', no daily cap'));
  byId('spend-policies', HTMLElement).replaceChildren(...(policies.length ? policies : noneToday()));
  const agents = bars(
    s.agents,
    (r) =>
      calls(r) +
      (r.policy ? ` · counts against ${r.policy}${r.cap_micros ? '’s daily cap' : ' (no daily cap)'}` : ''),
  );
  byId('spend-agents', HTMLElement).replaceChildren(...(agents.length ? agents : noneToday()));
  const max = maxUsed(s.days);
  byId('spend-days', HTMLElement).replaceChildren(...s.days.map((d) => day(d, max)));
}
