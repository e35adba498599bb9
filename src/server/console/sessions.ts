import { randomBytes } from 'node:crypto';

/** A signed-in console browser. `csrf` goes into the page and must come back on every state-changing request. */
export interface ConsoleSession {
  readonly id: string;
  readonly csrf: string;
  readonly createdAt: number;
  seenAt: number;
}

export interface SessionStoreOptions {
  /** Signed out after this long without a request (default 2 h). */
  idleMs?: number;
  /** Signed out this long after sign-in, however busy (default 12 h). */
  maxAgeMs?: number;
  /** At most this many sessions; past it the oldest is signed out (default 1,000). */
  maxSessions?: number;
  now?: () => number;
}

export interface SessionStore {
  create(): ConsoleSession;
  /** The live session with this id (and marks it seen), or undefined. */
  get(id: string | undefined): ConsoleSession | undefined;
  /** Signs a session out and ends whatever it had open (live streams). */
  destroy(id: string): void;
  /** Runs `onEnd` when the session ends (sign-out, expiry, eviction); returns a function that cancels it. */
  onEnd(id: string, onEnd: () => void): () => void;
  /** Signs every session out (server shutdown). */
  clear(): void;
  readonly size: number;
}

const token = () => randomBytes(32).toString('base64url');

/**
 * Console sessions in this process's memory: a restart (or another replica behind a load balancer without
 * sticky routing) signs operators out, and they sign in again with the admin token. Nothing here touches
 * Postgres, so the console adds no state that must be shared between replicas.
 */
export function createSessionStore(o: SessionStoreOptions = {}): SessionStore {
  const idleMs = o.idleMs ?? 2 * 3_600_000;
  const maxAgeMs = o.maxAgeMs ?? 12 * 3_600_000;
  const maxSessions = o.maxSessions ?? 1_000;
  const now = o.now ?? Date.now;
  const sessions = new Map<string, ConsoleSession>();
  const enders = new Map<string, Set<() => void>>();

  const end = (id: string) => {
    sessions.delete(id);
    const fns = enders.get(id);
    enders.delete(id);
    for (const fn of fns ?? []) fn();
  };
  const expired = (s: ConsoleSession, t: number) => t - s.seenAt > idleMs || t - s.createdAt > maxAgeMs;

  return {
    create() {
      const t = now();
      for (const [id, s] of sessions) if (expired(s, t)) end(id);
      // A Map iterates in insertion order: the first entry is the oldest sign-in.
      while (sessions.size >= maxSessions) end(sessions.keys().next().value ?? '');
      const s: ConsoleSession = { id: token(), csrf: token(), createdAt: t, seenAt: t };
      sessions.set(s.id, s);
      return s;
    },
    get(id) {
      if (!id) return undefined;
      const s = sessions.get(id);
      if (!s) return undefined;
      const t = now();
      if (expired(s, t)) {
        end(id);
        return undefined;
      }
      s.seenAt = t;
      return s;
    },
    destroy: end,
    onEnd(id, fn) {
      let fns = enders.get(id);
      if (!fns) enders.set(id, (fns = new Set()));
      fns.add(fn);
      return () => void fns.delete(fn);
    },
    clear() {
      for (const id of [...sessions.keys()]) end(id);
    },
    get size() {
      return sessions.size;
    },
  };
}
