import type { VendorDeclaration } from '../config/vendor-declaration.js';
import type { ResolvedCredential } from '../credentials/credentials.js';

/**
 * A vendor as the pipeline uses it: its declaration (env vars, prices), how to build its client from a credential,
 * and its built-in fake for --sandbox. Each folder under tools/ implements it; the pipeline never imports one.
 */
export interface VendorSpec<Client = unknown> extends VendorDeclaration {
  /** May be async so the vendor SDK is imported on first use, not at startup. */
  createClient(credential: ResolvedCredential, options: { timeoutMs: number }): Client | Promise<Client>;
  /** Starts (once per process) a local fake of this vendor for --sandbox. */
  sandbox(): Promise<{ baseUrl: string; secret: Record<string, string> }>;
  /**
   * `leash vendors check`: one harmless read (never a write) that proves the credential works. Resolves to a
   * short human summary (never a secret); a failure throws the client's scrubbed VendorError (kind 'auth' for
   * a bad key).
   */
  check?(client: Client): Promise<string>;
}
