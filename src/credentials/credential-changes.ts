import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../config/logger.js';

/** The channel migration 0015's trigger notifies on every change to vendor_credentials (any writer, any replica). */
const CHANNEL = 'leash_credentials';
/** The listening session's application_name. */
export const SESSION_NAME = 'leash credential changes';
/** How long the listening session's own probe may take to come back before changes count as unheard. */
const PROBE_MS = 5_000;
const RETRY_MS = [100, 250, 500, 1_000, 2_000, 5_000];
/** After a probe that never came back (a pooler, most likely): try again this much later. */
const UNHEARD_RETRY_MS = 60_000;

/**
 * What a cache of vendor clients needs to stay correct: whether changes are being heard, and a number that moves
 * on every change heard and whenever hearing stops or starts. An entry cached at generation g is good while
 * `live && generation === g`.
 */
export interface CredentialChanges {
  readonly live: boolean;
  readonly generation: number;
  /** Resolves once changes are heard (now, or when the session is back). Never rejects. */
  readonly ready: Promise<void>;
  /** Calls `fn` after each change heard and each loss of hearing; returns the unsubscribe. */
  onChange(fn: () => void): () => void;
  close(): Promise<void>;
}

/**
 * Hears credential changes with LISTEN on a session of its own, so a replica drops its cached vendor clients as
 * soon as Postgres delivers the notification. The session counts as live only once a NOTIFY it sent itself came
 * back (a transaction-mode pooler silently drops them); while not live, nothing may be cached. Reconnects with
 * backoff when the session ends.
 */
export function listenForCredentialChanges(
  connect: () => Promise<pg.Client>,
  log: Logger,
): CredentialChanges {
  let live = false;
  let generation = 0;
  let closed = false;
  let session: pg.Client | undefined;
  let retry: NodeJS.Timeout | undefined;
  let attempt = 0;
  let warned = false;
  const listeners = new Set<() => void>();
  let markReady: () => void = () => undefined;
  let ready = new Promise<void>((resolve) => (markReady = resolve));

  const changed = () => {
    generation++;
    for (const fn of [...listeners]) {
      try {
        fn();
      } catch {
        // A subscriber's failure never stops the others.
      }
    }
  };

  const lost = (client: pg.Client, retryMs?: number) => {
    if (session !== client) return;
    session = undefined;
    client.removeAllListeners('notification');
    client.end().catch(() => undefined);
    if (live) {
      live = false;
      ready = new Promise<void>((resolve) => (markReady = resolve));
      log.info('stopped hearing vendor credential changes; reading credentials on every call until back');
      changed();
    }
    schedule(retryMs);
  };

  const schedule = (retryMs?: number) => {
    if (closed || retry) return;
    const ms = retryMs ?? RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)] ?? 5_000;
    retry = setTimeout(() => {
      retry = undefined;
      void open();
    }, ms);
    retry.unref();
  };

  const open = async () => {
    let client: pg.Client | undefined;
    try {
      client = await connect();
      if (closed) return void client.end().catch(() => undefined);
      session = client;
      const probe = `probe:${randomUUID()}`;
      const current = client;
      let probed: () => void = () => undefined;
      const heard = new Promise<void>((resolve) => (probed = resolve));
      client.on('notification', (m) => {
        if (m.channel !== CHANNEL) return;
        if (m.payload === probe) probed();
        else if (!m.payload?.startsWith('probe:')) changed(); // another replica's probe is not a change
      });
      client.on('error', () => lost(current));
      client.on('end', () => lost(current));
      const unheard = (why: string) => {
        if (!warned)
          log.error(
            `vendor credential changes cannot be heard on this connection (${why}; LISTEN needs a session of its ` +
              'own, not a pooler); reading credentials on every call',
          );
        warned = true;
        lost(current, UNHEARD_RETRY_MS);
      };
      // A pooler (PgBouncer, in any mode) answers the connection itself: the process id it gives leash is not the
      // server's. A LISTEN sent there would stay on a shared server session, reach whichever client gets it next and
      // miss notifications, while its own probe can still come back on it; so it is not sent.
      const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
      const given = 'processID' in client ? client.processID : undefined;
      if (rows[0]?.pid !== given) return unheard('a pooler is between leash and the server');
      // Named, so an operator can tell this session from the pool's in pg_stat_activity.
      await client.query(`set application_name = '${SESSION_NAME}'; listen ${CHANNEL}`);
      await client.query('select pg_notify($1, $2)', [CHANNEL, probe]);
      let timer: NodeJS.Timeout | undefined;
      const inTime = await Promise.race([
        heard.then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), PROBE_MS);
          timer.unref(); // a closing process does not wait for it
        }),
      ]);
      clearTimeout(timer);
      if (session !== current) return; // ended meanwhile; `lost` has scheduled the next try
      if (!inTime) return unheard('its own test notification did not come back');
      attempt = 0;
      live = true;
      generation++; // nothing read before this point may be kept (it was not, but say so in the number too)
      markReady();
      log.debug('hearing vendor credential changes');
    } catch {
      if (client && session === client) lost(client);
      else {
        client?.end().catch(() => undefined);
        schedule();
      }
    }
  };

  void open();
  return {
    get live() {
      return live;
    },
    get generation() {
      return generation;
    },
    get ready() {
      return ready;
    },
    onChange(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      live = false;
      generation++;
      markReady();
      const s = session;
      session = undefined;
      await s?.end().catch(() => undefined);
    },
  };
}
