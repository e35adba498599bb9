// The REST front door: the vendors' own API paths (`/v1/refunds`, Twilio `Messages.json`, Resend `/emails`), so an
// agent keeps its vendor SDK and changes only the base URL and the key. An adapter like the MCP door: request in →
// runCall → the vendor's answer (or a refusal in the vendor's own error shape) out. Knows no vendor by name.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TrieRouter } from 'hono/router/trie-router';
import { checkPresentedKey, checkVaultKey } from '../pipeline/presented-key.js';
import { refusalKind } from '../pipeline/refusals.js';
import { runCall, type PipelineDeps } from '../pipeline/run-tool.js';
import type { ToolFailure } from '../pipeline/errors.js';
import {
  endpointName,
  restOutput,
  type Endpoint,
  type FlatForm,
  type VendorApi,
} from '../vendor-kit/rest-api.js';
import { FormLimitError, parseForm } from '../vendor-kit/form-parse.js';
import { vaultKeyLimit, type AuthThrottle } from './auth-throttle.js';
import { jsonOverLimit } from '../http/json-limits.js';
import { HttpError, type RouteHandler } from '../http/kit.js';

export interface RestDoorOptions {
  apis: readonly VendorApi[];
  /** The same limiter as /mcp: wrong vault keys here count against the address's allowance too. */
  throttle: AuthThrottle;
}

/** A matched route: the endpoint and the literal suffix each parameter's segment carries (`{Sid}.json`). */
interface Route {
  endpoint: Endpoint;
  suffixes: Record<string, string>;
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** `/v1/charges/{id}` → hono's `/v1/charges/:id`; `{Sid}.json` → `:Sid{[^/]+\.json}` (suffix stripped after matching). */
function honoPath(template: string): { path: string; suffixes: Record<string, string> } {
  const suffixes: Record<string, string> = {};
  const path = template
    .split('/')
    .map((segment) => {
      const m = /^\{(\w+)\}(.*)$/.exec(segment);
      if (!m) return segment;
      const [, name = '', suffix = ''] = m;
      if (!suffix) return `:${name}`;
      suffixes[name] = suffix;
      return `:${name}{[^/]+${escape(suffix)}}`;
    })
    .join('/');
  return { path, suffixes };
}

/** One router per vendor API, built once. */
function routerFor(api: VendorApi) {
  const router = new TrieRouter<Route>();
  for (const endpoint of api.endpoints) {
    const { path, suffixes } = honoPath(endpoint.path);
    router.add(endpoint.method, path, { endpoint, suffixes });
  }
  return (method: string, path: string) => {
    const [first] = router.match(method, path)[0];
    if (!first) return undefined;
    const [route, raw] = first;
    const params: Record<string, string> = {};
    // TrieRouter answers named parameters (a record); the index form is RegExpRouter's only.
    for (const [name, value] of Object.entries(raw as Record<string, string>)) {
      const suffix = route.suffixes[name] ?? '';
      params[name] = decode(suffix ? value.slice(0, -suffix.length) : value);
    }
    return { endpoint: route.endpoint, params };
  };
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A form body or query string decoded flat, in linear time; over one of the form limits is a 400 naming it. */
function flat(text: string): FlatForm {
  try {
    return parseForm(text);
  } catch (error) {
    if (error instanceof FormLimitError) throw new HttpError(400, error.message);
    throw error;
  }
}

function parseBody(api: VendorApi, req: IncomingMessage, raw: Buffer): unknown {
  if (!raw.length) return {};
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const text = raw.toString('utf8');
  if (type.includes('json') || (api.body === 'json' && !type.includes('form'))) {
    const over = jsonOverLimit(text);
    if (over) throw new HttpError(400, over);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new HttpError(400, 'request body is not valid JSON');
    }
  }
  return flat(text);
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** The status a refusal answers with: the refusal table's, or the vendor's own for a failed lookup or call. */
function statusOf(f: ToolFailure): number {
  const vendorStatus = f.vendor?.status;
  if (f.code === 'facts_unavailable' && vendorStatus && vendorStatus >= 400 && vendorStatus < 500)
    return vendorStatus;
  if (f.code === 'vendor_timeout') return 504;
  if (f.code.startsWith('vendor_')) return 502;
  return refusalKind(f.code).http;
}

/** The REST front door as a route of `leash serve`: claims only paths under a vendor API's prefixes. */
export function restRoutes(deps: PipelineDeps, o: RestDoorOptions): RouteHandler {
  const apis = o.apis.map((api) => ({ api, match: routerFor(api) }));
  const owner = (path: string) =>
    apis.find(({ api }) =>
      api.prefixes.some((p) => path === p || path.startsWith(p.endsWith('/') ? p : `${p}/`)),
    );

  function refuse(
    res: ServerResponse,
    api: VendorApi,
    status: number,
    code: string,
    message: string,
    auditId: string | null,
    extra: Record<string, string> = {},
    outcomeUnknown = false,
  ) {
    const tagged = `${message} [leash ${code}${auditId ? `, audit id ${auditId}` : ''}]`;
    const shaped = api.refusal({
      status,
      code,
      message: tagged,
      ...(outcomeUnknown ? { outcomeUnknown } : {}),
    });
    res.writeHead(status, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      ...(auditId ? { 'leash-audit-id': auditId } : {}),
      ...shaped.headers,
      ...extra,
    });
    res.end(JSON.stringify(shaped.body));
  }

  return async (req, res, url, _body, raw) => {
    const found = owner(url.pathname);
    if (!found) return false;
    const { api, match } = found;
    const method = (req.method ?? 'GET').toUpperCase();
    const key = api.presentedKey(req.headers);
    if (!key) {
      const message = `present the leash vault key where the ${api.vendor} SDK sends its API key`;
      refuse(res, api, 401, 'key_invalid', message, null);
      return true;
    }
    // A right key is served from any address; only wrong ones are throttled (429 once the address is blocked).
    const check = await checkVaultKey(deps.keys, key, vaultKeyLimit(o.throttle, req));
    if (check.verdict === 'throttled') {
      const wait = check.retryAfter;
      const message = `too many failed authentication attempts from this address; retry after ${wait}s`;
      refuse(res, api, 429, 'auth_throttled', message, null, { 'retry-after': String(wait) });
      return true;
    }
    if (check.verdict === 'wrong') {
      const message = check.malformed ? 'malformed vault key' : 'unknown vault key';
      refuse(res, api, 401, 'key_invalid', message, null);
      return true;
    }
    // What the door finds wrong itself is still a call by this key: the pipeline refuses it (invalid_input) with a
    // row, and the answer keeps the status the vendor would give (400, 413).
    const issues: { field: string; problem: string }[] = [];
    let status = 400;
    const header = req.headers['idempotency-key'];
    let idempotencyKey: string | undefined;
    if (header === undefined || (typeof header === 'string' && IDEMPOTENCY_KEY.test(header)))
      idempotencyKey = header;
    else
      issues.push({
        field: 'Idempotency-Key header',
        problem: 'Idempotency-Key must be 1-255 printable ASCII characters',
      });
    // Only a usable key's request is read: a revoked or expired key (or one the database cannot vouch for now) is
    // refused by the pipeline before it looks at any argument, so its body is never read or parsed.
    const usable = check.verdict === 'valid' && (await checkPresentedKey(deps, key)) === 'valid';
    let body: unknown = {};
    let query: FlatForm = {};
    if (!usable) issues.push({ field: 'body', problem: 'not read: the vault key was not accepted' });
    else {
      try {
        body = parseBody(api, req, await raw());
      } catch (error) {
        if (!(error instanceof HttpError)) throw error;
        if (error.status === 413) status = 413;
        issues.push({ field: 'body', problem: error.message });
      }
      try {
        query = flat(url.search.slice(1));
      } catch (error) {
        if (!(error instanceof HttpError)) throw error;
        issues.push({ field: 'query', problem: error.message });
      }
    }
    const headers: Record<string, string> = {};
    for (const h of api.forwardHeaders) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    const matched = match(method, url.pathname);
    const result = await runCall(deps, {
      key,
      // An unmatched path still goes through the pipeline: it is refused (endpoint_not_allowed) with an audit row.
      tool: matched?.endpoint.name ?? endpointName(api.vendor, method, url.pathname),
      args: { params: matched?.params ?? {}, query, body, headers },
      door: 'http',
      idempotencyKey,
      ...(issues.length ? { issues } : {}),
    });
    if (!result.ok && issues.length && result.failure.code === 'invalid_input') {
      const f = result.failure;
      // An over-limit body was not read to its end: the connection is not reused.
      const close: Record<string, string> = status === 413 ? { connection: 'close' } : {};
      refuse(res, api, status, f.code, f.message, f.audit_id, close);
      return true;
    }
    if (!result.ok) {
      const f = result.failure;
      if (f.code === 'key_invalid') o.throttle.reject(req, 'vault_key', 'wrong');
      // The vendor's own wait, when it gave one (a 429 answering a lookup, say), as the vendor would send it.
      const wait = f.details?.retry_after_seconds ?? f.vendor?.retry_after_seconds;
      const headers: Record<string, string> = typeof wait === 'number' ? { 'retry-after': String(wait) } : {};
      refuse(res, api, statusOf(f), f.code, f.message, f.audit_id, headers, f.details?.outcome === 'unknown');
      return true;
    }
    const out = restOutput.parse(result.output);
    res.writeHead(out.status, {
      'content-type': 'application/json',
      ...out.headers,
      'cache-control': 'no-store',
      'leash-audit-id': result.audit_id,
    });
    res.end(out.body);
    return true;
  };
}
