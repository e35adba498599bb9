// The operator console's browser app (bundled by scripts/bundle.js into one script, served from /console/assets/
// under a CSP that allows only this origin's scripts). It follows the audit stream into the live table, reads
// the overview into the side panels, and sends revokes and approval decisions. The page's markup is
// src/server/console/pages.ts; every element added here is built by dom.ts's h(), never from HTML.
import { byId } from './dom.js';
import { overviewPoller } from './overview.js';
import { liveStream } from './stream.js';
import type { Overview } from './types.js';
import { approvalsView } from './views/approvals.js';
import { showDetails } from './views/details.js';
import { renderKeys } from './views/keys.js';
import { liveTable } from './views/live-table.js';
import { revokeDialog } from './views/revoke.js';
import { renderSpend } from './views/spend.js';
import { renderUnknown } from './views/unknown.js';

const FILTER_DELAY_MS = 350;

function start(): void {
  const overview = overviewPoller(render);
  const askRevoke = revokeDialog(overview.refresh);
  const approvals = approvalsView(overview.refresh);
  const table = liveTable(showDetails);

  // Spend and keys are re-rendered only when they changed (re-rendering keys would drop a focused button).
  let lastSpend = '';
  let lastKeys = '';
  function render(o: Overview): void {
    byId('approvals', HTMLElement).hidden = !o.features.approvals;
    if (o.features.approvals) approvals.render(o.approvals);
    const spend = JSON.stringify(o.spend);
    if (spend !== lastSpend) renderSpend(o.spend);
    lastSpend = spend;
    const keys = JSON.stringify(o.keys);
    if (keys !== lastKeys) renderKeys(o.keys, askRevoke);
    lastKeys = keys;
    renderUnknown(o.unknown);
  }

  // ---- Live activity: the filter form's fields as the stream's query; a new stream whenever they change.
  const filters = byId('filters', HTMLFormElement);
  const query = () => {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(filters)) if (typeof v === 'string' && v.trim()) q.set(k, v.trim());
    return q.toString();
  };
  const live = liveStream(query, {
    reset: () => table.clear(),
    row: (row, settled) => {
      table.upsert(row, settled);
      overview.soon();
    },
  });
  let filterTimer: ReturnType<typeof setTimeout> | undefined;
  filters.addEventListener('input', () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(live.connect, FILTER_DELAY_MS);
  });
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    live.connect();
  });
  filters.addEventListener('reset', () => setTimeout(live.connect, 0));

  live.connect();
  overview.start();
}

start();
