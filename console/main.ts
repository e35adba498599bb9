// The operator console's browser app (bundled by scripts/bundle.js into one script, served from /console/assets/
// under a CSP that allows only this origin's scripts). It follows the audit stream into the live table, reads
// the overview into the agents view and the side panels and the recent operator actions into theirs (again soon
// after streamed rows, so the agents view moves with the calls, and right after a change made here), and sends
// revokes, resumes of paused keys and approval decisions. The page's markup is
// src/server/console/pages.ts; every element added here is built by dom.ts's h(), never from HTML.
import { byId } from './dom.js';
import { overviewPoller } from './overview.js';
import { liveStream } from './stream.js';
import type { OperatorAction, Overview } from './types.js';
import { actionsView } from './views/actions.js';
import { agentsView } from './views/agents.js';
import { approvalsView } from './views/approvals.js';
import { detailsDialog } from './views/details.js';
import { liveTable } from './views/live-table.js';
import { resumeDialog } from './views/resume.js';
import { revokeDialog } from './views/revoke.js';
import { renderSpend } from './views/spend.js';
import { renderUnknown } from './views/unknown.js';

const FILTER_DELAY_MS = 350;

function start(): void {
  const overview = overviewPoller(render);
  const askRevoke = revokeDialog(overview.refresh);
  const approvals = approvalsView(overview.refresh);
  const agents = agentsView(askRevoke, resumeDialog(overview.refresh));
  const actions = actionsView();
  const table = liveTable(detailsDialog(askRevoke));

  // Spend is re-rendered only when it changed; the agents view every time (its times are relative to now).
  let lastSpend = '';
  function render(o: Overview, recent: OperatorAction[]): void {
    agents.render(o.agents, o.now);
    actions.render(recent);
    byId('approvals', HTMLElement).hidden = !o.features.approvals;
    if (o.features.approvals) approvals.render(o.approvals);
    const spend = JSON.stringify(o.spend);
    if (spend !== lastSpend) renderSpend(o.spend);
    lastSpend = spend;
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
