import type { Config } from '../config/config.js';
import { resolveCredential, secretForms, type ResolvedCredential } from '../credentials/credentials.js';
import type { Db } from '../db/database.js';
import type { VendorSpec } from '../vendor-kit/vendor-spec.js';

export interface VendorHandle {
  client: unknown;
  /** Every form of the secret values (plain, base64, URL-encoded, `user:secret` pairs), kept only to scrub them from anything that leaves the process. */
  secrets: readonly string[];
  account: string | undefined;
}

const TTL_MS = 30_000;

/** Builds vendor clients from credentials and keeps them briefly; credentials change rarely and are not security state. */
export class VendorClients {
  private readonly cache = new Map<string, { handle: VendorHandle; expires: number }>();
  constructor(
    private readonly db: Db,
    private readonly config: Config,
    private readonly sandbox: boolean,
    private readonly timeoutMs: number,
  ) {}

  async get(spec: VendorSpec, credentialName: string, account: string | undefined): Promise<VendorHandle> {
    const cacheKey = `${spec.name}/${credentialName}/${account ?? ''}`;
    const hit = this.cache.get(cacheKey);
    if (hit && hit.expires > Date.now()) return hit.handle;
    let credential: ResolvedCredential;
    if (this.sandbox) {
      const fake = await spec.sandbox();
      credential = { vendor: spec.name, name: credentialName, secret: fake.secret, baseUrl: fake.baseUrl };
    } else {
      credential = await resolveCredential(this.db, this.config, spec.name, credentialName, spec.env.secrets);
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
    this.cache.set(cacheKey, { handle, expires: Date.now() + TTL_MS });
    return handle;
  }

  /** Every secret value this process has loaded, for scrubbing output. */
  knownSecrets(): string[] {
    return [...this.cache.values()].flatMap((e) => e.handle.secrets);
  }
}
