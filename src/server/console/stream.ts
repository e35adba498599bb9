import type { ServerResponse } from 'node:http';
import type { AuditFilter } from '../../audit/query.js';
import { watchAudit } from '../../audit/watch.js';
import type { Db } from '../../db/database.js';
import { securityHeaders } from './security.js';

export interface StreamOptions {
  /** Rows sent when the stream opens (newest last), so a fresh page is not empty. */
  backlog: number;
  /** How often the watcher polls (ms). */
  intervalMs: number;
  /** Comment lines at this interval keep proxies from closing an idle stream (ms). */
  heartbeatMs: number;
  /** Called on every heartbeat; returning false ends the stream (the session expired). */
  stillAllowed: () => boolean;
}

/** A browser that stops reading gets its stream cut here (it reconnects and catches up from the backlog). */
const MAX_BUFFERED = 4 << 20;

/**
 * Audit rows as Server-Sent Events: `row` when a row first appears, `settle` when its outcome or cost lands,
 * `ready` once the backlog is out, `notice` when the database is lost or back. Each event's data is one
 * audit row of the operator columns (no request payload, no metadata: nothing that could hold a secret).
 * Returns a function that ends the stream.
 */
export function streamAudit(db: Db, res: ServerResponse, filter: AuditFilter, o: StreamOptions): () => void {
  res.writeHead(
    200,
    securityHeaders({
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    }),
  );
  let ended = false;
  const write = (chunk: string) => {
    if (ended) return;
    res.write(chunk);
    if (res.writableLength > MAX_BUFFERED) stop();
  };
  const event = (name: string, data: unknown) => write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  // Reconnect after 1 s when the connection drops (EventSource's default is 3 s).
  write('retry: 1000\n\n');

  const watch = watchAudit(db, filter, (e) => event(e.kind, e.row), {
    backlog: o.backlog,
    intervalMs: o.intervalMs,
    onNotice: (message) => event('notice', { message }),
  });
  watch.ready.then(
    () => event('ready', {}),
    () => {
      event('notice', { message: 'cannot read the audit log' });
      stop();
    },
  );
  const heartbeat = setInterval(() => {
    if (!o.stillAllowed()) return stop();
    write(': ping\n\n');
  }, o.heartbeatMs);

  function stop() {
    if (ended) return;
    ended = true;
    clearInterval(heartbeat);
    void watch.stop();
    res.end();
  }
  res.on('close', stop);
  return stop;
}
