import { randomBytes } from 'node:crypto';

/** Who signed in: an operator (by name and id) or the break-glass admin token (`admin`, no operator id). */
export interface SessionOwner {
  readonly operator: string;
  readonly operatorId: string | null;
}

/** A signed-in console browser. `csrf` goes into the page and must come back on every state-changing request. */
export interface ConsoleSession extends SessionOwner {
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
  /** Signs `owner` in (default: the admin token). */
  create(owner?: SessionOwner): ConsoleSession;
  /** The live session with this id (and marks it seen), or undefined. */
  get(id: string | undefined): ConsoleSession | undefined;
  /** Signs a session out and ends whatever it had open (live streams). */
  destroy(id: string): void;
  /** Runs `onEnd` when the session ends (sign-out, expiry, eviction); returns a function that cancels it. */
  onEnd(id: string, onEnd: () => void): () => void;
  /** Signs every session out (server shutdown). */
  clear(): void;
  /** The operator ids that have sessions here (the admin token's have none). */
  operatorIds(): string[];
  /** Signs out every session of these operators (they were removed); returns how many ended. */
  endOperators(ids: ReadonlySet<string> | readonly string[]): number;
  readonly size: number;
}

const token = () => randomBytes(32).toString('base64url');

/** The admin token's sessions. */
export const ADMIN_OWNER: SessionOwner = Object.freeze({ operator: 'admin', operatorId: null });

/**
 * Console sessions in this process's memory: a restart (or another replica behind a load balancer without
 * sticky routing) signs operators out, and they sign in again with their token. Nothing here touches Postgres:
 * the console routes check each operator session's operator against the operators table (routes.ts), so a removed
 * operator's sessions end on every replica without sessions being shared.
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
    create(owner = ADMIN_OWNER) {
      const t = now();
      for (const [id, s] of sessions) if (expired(s, t)) end(id);
      // A Map iterates in insertion order: the first entry is the oldest sign-in.
      while (sessions.size >= maxSessions) end(sessions.keys().next().value ?? '');
      const s: ConsoleSession = {
        id: token(),
        csrf: token(),
        createdAt: t,
        seenAt: t,
        operator: owner.operator,
        operatorId: owner.operatorId,
      };
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
    operatorIds() {
      const ids = new Set<string>();
      for (const s of sessions.values()) if (s.operatorId) ids.add(s.operatorId);
      return [...ids];
    },
    endOperators(ids) {
      const gone = new Set(ids);
      let n = 0;
      for (const [id, s] of [...sessions])
        if (s.operatorId && gone.has(s.operatorId)) {
          end(id);
          n++;
        }
      return n;
    },
    get size() {
      return sessions.size;
    },
  };
}
