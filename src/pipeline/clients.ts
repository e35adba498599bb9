import type { Config } from '../config/config.js';
import type { CredentialChanges } from '../credentials/credential-changes.js';
import { resolveCredential, secretForms, type ResolvedCredential } from '../credentials/credentials.js';
import type { Db } from '../db/database.js';
import type { VendorSpec } from './vendor-spec.js';

export interface VendorHandle {
  client: unknown;
  /** Every form of the secret values (plain, base64, URL-encoded, `user:secret` pairs), kept only to scrub them from anything that leaves the process. */
  secrets: readonly string[];
  account: string | undefined;
}

/** Without a change feed (pipelines built outside the runtime: tests, benches), how long a client is kept. */
const TTL_MS = 30_000;

interface Entry {
  handle: VendorHandle;
  /** The feed's generation the credential was read at, or null when it may not be reused. */
  generation: number | null;
  expires: number;
}

/**
 * Builds vendor clients from credentials and keeps them until the credential changes: with `changes` (the
 * runtime's LISTEN feed), an entry is reused only while changes are heard and none was heard since it was read,
 * so every replica's next call after `leash vendors set` uses the new credential without a query per call.
 */
export class VendorClients {
  private readonly cache = new Map<string, Entry>();
  constructor(
    private readonly db: Db,
    private readonly config: Config,
    private readonly sandbox: boolean,
    private readonly timeoutMs: number,
    private readonly changes?: CredentialChanges,
  ) {}

  async get(spec: VendorSpec, credentialName: string, account: string | undefined): Promise<VendorHandle> {
    const cacheKey = `${spec.name}/${credentialName}/${account ?? ''}`;
    const hit = this.cache.get(cacheKey);
    if (hit && this.fresh(hit)) return hit.handle;
    // Taken before the read: a change heard while it is in flight keeps its (maybe old) result out of the cache.
    const generation = this.changes?.live ? this.changes.generation : null;
    let credential: ResolvedCredential;
    if (this.sandbox) {
      const fake = await spec.sandbox();
      credential = { vendor: spec.name, name: credentialName, secret: fake.secret, baseUrl: fake.baseUrl };
    } else {
      credential = await resolveCredential(
        this.db,
        this.config,
        spec.name,
        credentialName,
        spec.env.secrets,
        spec.env.shapes,
      );
    }
    const routedAccount = account ?? credential.account;
    const handle: VendorHandle = {
      client: await spec.createClient(
        routedAccount ? { ...credential, account: routedAccount } : credential,
        {
          timeoutMs: this.timeoutMs,
        },
      ),
      secrets: secretForms(credential.secret),
      account: routedAccount,
    };
    // Kept even when it may not be reused, so knownSecrets() still scrubs this credential.
    this.cache.set(cacheKey, { handle, generation, expires: Date.now() + TTL_MS });
    return handle;
  }

  private fresh(e: Entry): boolean {
    if (!this.changes) return e.expires > Date.now();
    return this.changes.live && e.generation === this.changes.generation;
  }

  /** Every secret value this process has loaded, for scrubbing output. */
  knownSecrets(): string[] {
    return [...this.cache.values()].flatMap((e) => e.handle.secrets);
  }
}
