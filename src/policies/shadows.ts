import type { Db } from '../db/database.js';
import type { CompiledPolicy } from '../policy/compile.js';
import { loadShadows } from './store.js';

/** How old the shadows a replica decides by may be: a shadow applied or dropped is seen within this long. */
export const SHADOW_REFRESH_MS = 5_000;

/**
 * The policies' shadow versions as the pipeline reads them: from memory, never with a query on a call's path. One
 * small query refreshes all of them, off the path, at most every `refreshMs` and only while calls come (a call
 * that finds them older starts a refresh and goes on with what is there). A shadow decides nothing, so a replica
 * that sees a new one a few seconds late only compares a few calls fewer; the audit row names the version compared.
 */
export class ShadowPolicies {
  private shadows = new Map<string, CompiledPolicy>();
  private loadedAt = -Infinity;
  private loading: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly refreshMs = SHADOW_REFRESH_MS,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  /** The shadow of `policy`, or undefined; starts a refresh when what is held is older than refreshMs. */
  get(policy: string): CompiledPolicy | undefined {
    if (performance.now() - this.loadedAt >= this.refreshMs) void this.refresh();
    return this.shadows.get(policy);
  }

  /** Reads every shadow now (one query); concurrent callers share it. Never rejects: on failure, keeps what it had. */
  refresh(): Promise<void> {
    this.loading ??= (async () => {
      try {
        this.shadows = await loadShadows(this.db);
        this.loadedAt = performance.now();
      } catch (error) {
        // Tried again on the next call after refreshMs, not at once: a database that is down is not asked per call.
        this.loadedAt = performance.now();
        this.onError(error);
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }
}
