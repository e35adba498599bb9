// The live activity table: one row per audit id, newest first, updated in place when the call settles (with a
// flash), at most MAX_ROWS kept. Choosing a row (its time button, or anywhere on it) opens its details. Each cell
// has a class naming its column: at phone width console.css lays a row out as a card by them.
import { byId, h } from '../dom.js';
import { clock, usd } from '../format.js';
import type { AuditRow } from '../types.js';

const MAX_ROWS = 500;

export interface LiveTable {
  /** Forgets every row (a new stream sends its backlog again). */
  clear(): void;
  /** Adds a row on top, or updates the one with its id; `settled` flashes it. */
  upsert(row: AuditRow, settled: boolean): void;
}

export function liveTable(open: (row: AuditRow) => void): LiveTable {
  const table = byId('audit', HTMLTableElement);
  const tbody = table.tBodies[0] ?? table.createTBody();
  const empty = byId('live-empty', HTMLElement);
  const rows = new Map<string, { row: AuditRow; tr: HTMLTableRowElement }>();

  const openById = (id: string) => {
    const known = rows.get(id);
    if (known) open(known.row);
  };

  function cells(r: AuditRow): HTMLTableCellElement[] {
    const denied = r.decision !== 'allowed';
    const time = h(
      'button',
      {
        type: 'button',
        class: 'link',
        'aria-label': `Details of the ${r.tool} call at ${clock(r.ts)}`,
        onclick: (e) => {
          e.stopPropagation();
          openById(r.id);
        },
      },
      clock(r.ts),
    );
    return [
      h('td', { class: 'c-time' }, time),
      // Cells cut a long value with an ellipsis (console.css); the title and the row's details hold all of it.
      h('td', { class: 'c-agent', title: r.agent, text: r.agent }),
      h('td', { class: 'c-run', title: r.run_id, text: r.run_id || '–' }),
      h('td', { class: 'c-tool', title: r.tool, text: r.tool }),
      h(
        'td',
        { class: 'c-decision', title: denied ? r.reason : null },
        h('span', { class: `badge ${r.decision}`, text: r.decision }),
        denied && r.reason ? h('span', { class: 'reason', text: r.reason }) : null,
      ),
      h('td', { class: 'c-outcome' }, denied ? '–' : outcomeBadge(r)),
      usdCell(r),
    ];
  }

  return {
    clear() {
      rows.clear();
      tbody.replaceChildren();
      empty.hidden = false;
    },
    upsert(r, settled) {
      const known = rows.get(r.id);
      if (known) {
        known.row = r;
        // A row that settles is redrawn; whoever had its details button focused (keyboard users) keeps the focus.
        const focused = known.tr.contains(document.activeElement);
        known.tr.replaceChildren(...cells(r));
        if (focused) known.tr.querySelector<HTMLElement>('button')?.focus();
        known.tr.dataset.outcome = r.outcome;
        known.tr.dataset.costStatus = r.cost_status;
        if (settled) flash(known.tr);
        return;
      }
      const tr = h(
        'tr',
        {
          'data-audit-id': r.id,
          'data-outcome': r.outcome,
          'data-cost-status': r.cost_status,
          onclick: () => openById(r.id),
        },
        cells(r),
      );
      rows.set(r.id, { row: r, tr });
      tbody.prepend(tr);
      while (rows.size > MAX_ROWS) {
        const oldest = tbody.lastElementChild;
        if (!oldest) break;
        rows.delete(oldest.getAttribute('data-audit-id') ?? '');
        oldest.remove();
      }
      empty.hidden = rows.size > 0;
    },
  };
}

// A replay: the vendor answered with an earlier call's object; that call counts it, this one costs nothing.
const outcomeBadge = (r: AuditRow) =>
  r.replay_of
    ? h('span', { class: 'badge replay', text: 'replay', title: `replay of ${r.replay_of}` })
    : h('span', { class: `badge ${r.outcome}`, text: r.outcome });

function usdCell(r: AuditRow): HTMLTableCellElement {
  if (r.decision !== 'allowed') return h('td', { class: 'num c-usd' }, '–');
  if (r.cost_status === 'settled' || r.cost_status === 'none')
    return h('td', { class: 'num c-usd' }, usd(r.cost_micros));
  return h(
    'td',
    { class: 'num c-usd', title: 'estimate, reserved until it settles' },
    h('span', { class: 'est', text: `~${usd(r.reserved_micros + r.cost_micros)}` }),
  );
}

function flash(tr: HTMLElement): void {
  tr.classList.remove('flash');
  void tr.offsetWidth; // restart the animation
  tr.classList.add('flash');
}
