import type { IncomingMessage, ServerResponse } from 'node:http';
import { displayText } from '../audit/display-text.js';
import type { Db } from '../db/database.js';
import { formatUsd, minorUnitExponent } from '../policy/money.js';
import type { RouteHandler } from '../http/kit.js';
import { verifyLinkToken } from './link.js';
import {
  cancelledText,
  decideApproval,
  getApproval,
  linkIsLive,
  MAX_BY,
  MAX_NOTE,
  type ApprovalRow,
} from './store.js';

const MAX_FORM = 8 * 1024;

const HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  // No script, no outside resources, no framing (no clickjacking the buttons), forms only to this origin.
  'content-security-policy':
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // The token is in the URL: never send it on as a Referer.
  'referrer-policy': 'no-referrer',
};

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
// Text on these pages is agent- or approver-supplied: bidi overrides and other hidden characters show as markers.
const esc = (s: string) => escapeHtml(displayText(s));

function page(res: ServerResponse, status: number, title: string, body: string) {
  res.writeHead(status, HEADERS);
  res.end(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
      `<title>${esc(title)} · leash</title><style>body{font:15px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}` +
      // Long unbroken values (a subject, a name) wrap where they must rather than widen the page.
      `h1,p,dd{overflow-wrap:anywhere}dt{font-weight:600}dd{margin:0 0 .5rem}` +
      `pre{background:#f4f4f4;padding:.5rem;white-space:pre-wrap;overflow-wrap:anywhere}` +
      `button{font-size:1rem;padding:.4rem 1.2rem;margin-right:.5rem}textarea,input{width:100%;box-sizing:border-box}</style></head>` +
      `<body><h1>${esc(title)}</h1>${body}</body></html>`,
  );
}

/**
 * A vendor amount in minor units as money in its currency (`€36.80`, `¥500`, `XYZ 40.00`); a code that is no
 * currency code at all reads `4000 XY (minor units)`, as stored.
 */
function money(minor: number, currency: string): string {
  const code = currency.toUpperCase();
  try {
    const digits = minorUnitExponent(code);
    const f = new Intl.NumberFormat('en-US', {
      style: 'currency',
      currency: code,
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
    return f.format(minor / 10 ** digits);
  } catch {
    return `${minor} ${code} (minor units)`;
  }
}

/** The USD value admitted (`$40.00`), and the vendor's own amount only when it is in another currency. */
function amountText(a: Pick<ApprovalRow, 'usd_micros' | 'amount' | 'currency'>): string {
  const usd = formatUsd(a.usd_micros);
  if (a.amount === null || !a.currency || a.currency.toUpperCase() === 'USD') return usd;
  return `${usd} (${money(a.amount, a.currency)})`;
}

function summary(a: ApprovalRow): string {
  const rows: [string, string][] = [
    ['Call', a.operation ? `${a.tool} (${a.operation})` : a.tool],
    ['Amount', amountText(a)],
    ['Agent', `${a.agent ?? '?'}${a.run_id ? `, run ${a.run_id}` : ''}`],
    ['Key', a.key_id],
    ['Policy', a.policy ?? '?'],
    ['Requested', a.created_at.toISOString()],
    ['Expires', a.expires_at.toISOString()],
  ];
  return (
    `<dl>${rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>` +
    `<p>Exact arguments (the call is admitted only with these):</p>` +
    // Line by line: the JSON's own line breaks stay; anything hidden inside a value is shown as a marker.
    `<pre>${JSON.stringify(a.request ?? {}, null, 2)
      .split('\n')
      .map(esc)
      .join('\n')}</pre>`
  );
}

const closed = (a: ApprovalRow) =>
  a.status === 'expired'
    ? `This request expired at ${a.expires_at.toISOString()}; it can no longer be approved.`
    : a.status === 'cancelled'
      ? `This request was ${cancelledText(a)}.`
      : `This request is already ${a.status}${a.decided_by ? ` (by ${a.decided_by})` : ''}.`;

/** A form POST from another site, or no form at all, is refused: only this page's own form may decide. */
function sameOrigin(req: IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true; // older browsers and curl; the one-time token still has to match
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

/**
 * The page a signed link from an `approval_requested` alert opens: `GET /approvals/<id>?t=<token>` shows the
 * call with Approve / Deny (and changes nothing); the form's POST decides once, spending the link in the same
 * update. A tampered, replayed or expired link is refused with a page that says which.
 */
export function approvalLinkRoutes(db: Db, key: Buffer | undefined): RouteHandler {
  return async (req, res, url, _body, raw) => {
    const m = /^\/approvals\/([0-9a-f-]{36})$/i.exec(url.pathname);
    if (!m?.[1]) return false;
    const id = m[1];
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'POST') {
      res.writeHead(405, { allow: 'GET, POST' }).end();
      return true;
    }
    const refused = (status: number, why: string): true => {
      page(res, status, 'Link not valid', `<p>${esc(why)}</p>`);
      return true;
    };
    if (!key) return refused(404, 'Approval links are not enabled on this server.');
    const a = await getApproval(db, id);
    const token = url.searchParams.get('t') ?? '';
    const hash = a ? verifyLinkToken(key, a.id, a.expires_at, token) : undefined;
    if (!a || !hash) return refused(403, 'This link was altered or was not issued by this server.');
    if (a.status !== 'pending') return refused(410, closed(a));
    if (method === 'GET') {
      if (!(await linkIsLive(db, id, hash))) return refused(410, 'This link has already been used.');
      const action = `/approvals/${a.id}?t=${encodeURIComponent(token)}`;
      page(
        res,
        200,
        'Approve this call?',
        summary(a) +
          `<form method="post" action="${esc(action)}">` +
          `<p><label>Your name<br><input name="by" maxlength="${MAX_BY}" autocomplete="name"></label></p>` +
          `<p><label>Note (the agent sees it)<br><textarea name="note" rows="2" maxlength="${MAX_NOTE}"></textarea></label></p>` +
          `<p><button name="decision" value="approve">Approve</button><button name="decision" value="deny">Deny</button></p>` +
          `</form><p>Approving admits the agent's next identical call once; the usual caps still apply. This link works once.</p>`,
      );
      return true;
    }
    if (!sameOrigin(req)) return refused(403, 'This form can only be sent from its own page.');
    const bytes = await raw();
    const form = bytes.length <= MAX_FORM ? new URLSearchParams(bytes.toString('utf8')) : undefined;
    const decision = form?.get('decision');
    if (!form || (decision !== 'approve' && decision !== 'deny'))
      return refused(400, 'Choose Approve or Deny on the page.');
    const by = form
      .get('by')
      ?.trim()
      .slice(0, MAX_BY - 14);
    const note = form.get('note')?.trim().slice(0, MAX_NOTE) || undefined;
    const r = await decideApproval(
      db,
      id,
      decision === 'approve' ? 'approved' : 'denied',
      // Whoever holds the link says who they are: taken on trust, and marked so.
      { name: by ? `${by} (signed link)` : 'signed link', via: 'link' },
      note,
      hash,
    );
    if (!r.ok)
      return refused(
        410,
        r.approval && r.reason !== 'link_invalid' ? closed(r.approval) : 'This link has already been used.',
      );
    page(
      res,
      200,
      decision === 'approve' ? 'Approved' : 'Denied',
      `<p>${decision === 'approve' ? "The agent's next identical call will be admitted once." : 'The agent will be told the call was denied.'}</p>` +
        summary(r.approval),
    );
    return true;
  };
}
