import type { Config } from '../config/config.js';
import type { CompiledPolicy } from '../policy/compile.js';
import type { VendorClients, VendorHandle } from './clients.js';
import {
  pricingFrom,
  type BudgetView,
  type CallContext,
  type Catalog,
  type LookupContext,
  type ToolDefinition,
} from './tool.js';

export interface VendorContextDeps {
  clients: VendorClients;
  config: Config;
  catalog: Catalog;
  sandbox: boolean;
}

/** What a tool is handed to look facts up and to call its vendor under one policy. */
export interface VendorContext {
  /** The vendor client (undefined for leash's own tools); its `secrets` scrub what the vendor says. */
  handle: VendorHandle | undefined;
  lookupCtx: LookupContext<unknown>;
  callCtx(idempotencyKey: string, budget: () => Promise<BudgetView>): CallContext<unknown>;
}

/** The credential name and account a policy routes a tool's vendor calls to. */
export function vendorRoute(
  tool: ToolDefinition,
  policy: CompiledPolicy,
): { credential: string; account: string | undefined } {
  const vendorConfig = tool.vendor ? policy.vendors[tool.vendor] : undefined;
  return {
    credential: policy.tools.get(tool.name)?.credential ?? vendorConfig?.credential ?? 'default',
    account: vendorConfig?.account,
  };
}

/**
 * The one way a tool's vendor context is built — client, rule, account, pricing, idempotency key — for a call and
 * for reconcile alike. Throws when the policy does not allow the tool, the vendor is not in the catalog, or no
 * usable credential exists (the caller refuses with credential_unavailable).
 */
export async function vendorContext(
  deps: VendorContextDeps,
  tool: ToolDefinition,
  policy: CompiledPolicy,
): Promise<VendorContext> {
  const rule = policy.tools.get(tool.name);
  if (!rule) throw new Error(`policy '${policy.name}' does not allow ${tool.name}`);
  let handle: VendorHandle | undefined;
  if (tool.vendor) {
    const spec = deps.catalog.vendors.get(tool.vendor);
    if (!spec) throw new Error(`no vendor ${tool.vendor} in the catalog`);
    const route = vendorRoute(tool, policy);
    handle = await deps.clients.get(spec, route.credential, route.account);
  }
  const lookupCtx: LookupContext<unknown> = {
    client: handle?.client,
    rule,
    account: handle?.account,
    sandbox: deps.sandbox,
  };
  const pricing = pricingFrom(deps.config);
  return {
    handle,
    lookupCtx,
    callCtx: (idempotencyKey, budget) => ({ ...lookupCtx, idempotencyKey, pricing, budget }),
  };
}
