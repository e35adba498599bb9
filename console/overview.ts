// The panels' numbers: one read of the overview and of the recent operator actions every 5 s while the page is
// visible, one soon after calls stream in, and one right after a change; never two at once (a read asked for during
// one runs when it ends).
import { getActions, getOverview, SignedOut } from './api.js';
import { setStatus } from './notify.js';
import type { OperatorAction, Overview } from './types.js';

const EVERY_MS = 5000;
const SOON_MS = 1000;

export interface OverviewPoller {
  /** Reads the overview now (or right after the read in flight). */
  refresh: () => void;
  /** Reads it within a second, however many times this is called meanwhile. */
  soon: () => void;
  /** Starts the 5-second reads. */
  start: () => void;
}

export function overviewPoller(render: (o: Overview, actions: OperatorAction[]) => void): OverviewPoller {
  let busy = false;
  let again = false;
  let soonTimer: ReturnType<typeof setTimeout> | undefined;

  async function read() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const [o, actions] = await Promise.all([getOverview(), getActions()]);
      render(o, actions);
    } catch (e) {
      if (!(e instanceof SignedOut)) setStatus('warn', 'Cannot reach leash');
    } finally {
      busy = false;
      if (again) {
        again = false;
        void read();
      }
    }
  }
  const refresh = () => void read();

  return {
    refresh,
    soon: () => {
      soonTimer ??= setTimeout(() => {
        soonTimer = undefined;
        refresh();
      }, SOON_MS);
    },
    start: () => {
      refresh();
      setInterval(() => document.hidden || refresh(), EVERY_MS);
      document.addEventListener('visibilitychange', () => document.hidden || refresh());
    },
  };
}
