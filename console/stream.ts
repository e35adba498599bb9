// The live view's feed: one EventSource on /console/api/stream per filter (src/server/console/stream.ts sends
// `row` when an audit row appears, `settle` when its outcome or cost lands, `ready` once the backlog is out and
// `notice` when the database is lost or back). The browser reconnects a dropped stream by itself; a refused one
// (signed out, too many streams) it does not, so that case checks the session, then tries again.
import { sessionAlive } from './api.js';
import { setStatus } from './notify.js';
import type { AuditRow } from './types.js';

export interface LiveHandlers {
  /** A new stream is opening: forget the rows shown so far (its backlog sends them again). */
  reset(): void;
  /** A row arrived; `settled` when it is an update of one already sent. */
  row(row: AuditRow, settled: boolean): void;
}

export interface LiveStream {
  /** (Re)opens the stream with the filter's current query string. */
  connect: () => void;
}

const RETRY_MS = 3000;

// Same-origin JSON written by the server's stream.ts.
const parse = <T>(e: MessageEvent<string>): T => JSON.parse(e.data) as T;

export function liveStream(query: () => string, on: LiveHandlers): LiveStream {
  let source: EventSource | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;

  function connect(): void {
    clearTimeout(retry);
    source?.close();
    on.reset();
    setStatus('connecting', 'Connecting…');
    const own = new EventSource(`/console/api/stream?${query()}`);
    source = own;
    own.addEventListener('row', (e: MessageEvent<string>) => on.row(parse(e), false));
    own.addEventListener('settle', (e: MessageEvent<string>) => on.row(parse(e), true));
    own.addEventListener('ready', () => setStatus('live', 'Live'));
    own.addEventListener('notice', (e: MessageEvent<string>) =>
      setStatus('warn', parse<{ message: string }>(e).message),
    );
    own.onerror = () => {
      if (own !== source) return;
      setStatus('warn', 'Reconnecting…');
      if (own.readyState === EventSource.CLOSED)
        void sessionAlive().then((alive) => {
          if (alive && own === source) retry = setTimeout(connect, RETRY_MS);
        });
    };
  }
  return { connect };
}
