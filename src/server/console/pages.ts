import type { AssetUrls } from './assets.js';

/**
 * The console's server-rendered pages. Everything dynamic on the console page is filled in by its script (built
 * from console/) with textContent. `urls` are the built assets' hashed URLs; without them (the console is off, or
 * not built) a page goes unstyled.
 */

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function layout(urls: AssetUrls | undefined, title: string, head: string, body: string): string {
  const assets = urls
    ? `<link rel="icon" href="${urls.icon}" type="image/svg+xml">\n<link rel="stylesheet" href="${urls.style}">\n`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title>
${assets}${head}
</head>
<body>
${body}
</body>
</html>
`;
}

/** The sign-in form. The token is POSTed in the body, never put in a URL. */
export function signInPage(urls: AssetUrls | undefined, o: { error?: string } = {}): string {
  const error = o.error ? `<p class="error" role="alert" id="signin-error">${escapeHtml(o.error)}</p>` : '';
  return layout(
    urls,
    'Sign in · leash console',
    '',
    `<main class="signin">
  <h1><span class="logo" aria-hidden="true"></span>leash console</h1>
  <form method="post" action="/console/login" id="signin">
    <input type="text" name="username" value="leash-operator" autocomplete="username" hidden>
    <label for="token">Operator token or admin token</label>
    <input id="token" name="token" type="password" autocomplete="current-password" required autofocus spellcheck="false" aria-describedby="token-hint">
    <button type="submit">Sign in</button>
  </form>
  ${error}
  <p class="hint" id="token-hint">Your operator token (<code>leash operators add NAME</code> prints it once): what you do here is recorded under your name. Or the server's break-glass <code>LEASH_ADMIN_TOKEN</code>, recorded as <code>admin</code>; <code>leash demo</code> prints one.</p>
</main>`,
  );
}

/** Who a console session belongs to, as its header shows it. */
export interface SignedIn {
  /** The operator's name; `admin` for the break-glass admin token. */
  name: string;
  adminToken: boolean;
}

/**
 * The console itself: static structure only, with the session's CSRF token for its script and, in the header, who is
 * signed in (every change made here is recorded under that name).
 */
export function consolePage(urls: AssetUrls, csrf: string, who: SignedIn): string {
  const token = escapeHtml(csrf);
  const name = who.adminToken ? `${who.name} (break-glass token)` : who.name;
  return layout(
    urls,
    'leash console',
    `<meta name="leash-csrf" content="${token}">
<script src="${urls.script}" defer></script>`,
    `<a class="skip" href="#agents">Skip to agents</a>
<header class="topbar">
  <h1><span class="logo" aria-hidden="true"></span>leash</h1>
  <span id="status" class="status" role="status" data-state="connecting">Connecting…</span>
  <span id="who" class="who" data-admin-token="${who.adminToken ? 'yes' : 'no'}" title="Your revokes and decisions are recorded under this name">Signed in as <strong id="who-name">${escapeHtml(name)}</strong></span>
  <form method="post" action="/console/logout" class="signout">
    <input type="hidden" name="csrf" value="${token}">
    <button type="submit" class="quiet">Sign out</button>
  </form>
</header>
<noscript><p class="error">The console needs JavaScript (served by leash itself; nothing is loaded from elsewhere).</p></noscript>
<main class="grid">
  <section id="agents" class="panel agents" aria-labelledby="agents-h" tabindex="-1">
    <h2 id="agents-h">Agents <small id="agents-count"></small></h2>
    <table id="agents-table" class="agents-table">
      <caption class="sr-only">Active keys, busiest first: calls per minute over the last 15 minutes, today's spend against the cap nearest to stopping each, denials, last call, whether it is paused and why, and revoke or resume.</caption>
      <thead><tr><th scope="col">Agent · run · key</th><th scope="col">Calls / min <small>(15 min)</small></th><th scope="col">Spend today <small>(of cap)</small></th><th scope="col" class="num">Denied <small>(15 min)</small></th><th scope="col">Last call</th><th scope="col"><span class="sr-only">Revoke</span></th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="agents-empty" class="empty">No active keys.</p>
  </section>
  <section id="live" class="panel live" aria-labelledby="live-h" tabindex="-1">
    <h2 id="live-h">Live activity</h2>
    <form id="filters" class="filters" role="search" aria-label="Filter audit rows">
      <label>Agent <input name="agent" autocomplete="off" spellcheck="false"></label>
      <label>Run <input name="run" autocomplete="off" spellcheck="false"></label>
      <label>Tool <input name="tool" autocomplete="off" spellcheck="false"></label>
      <label>Decision <select name="decision"><option value="">any</option><option value="allowed">allowed</option><option value="denied">denied</option><option value="held">held</option></select></label>
      <button type="reset" class="quiet">Clear</button>
    </form>
    <div class="table-wrap">
      <table id="audit">
        <caption class="sr-only">Audit rows, newest first. Choose a time to see a row's details.</caption>
        <thead><tr><th scope="col" class="c-time">Time</th><th scope="col" class="c-agent">Agent</th><th scope="col" class="c-run">Run</th><th scope="col" class="c-tool">Tool</th><th scope="col" class="c-decision">Decision</th><th scope="col" class="c-outcome">Outcome</th><th scope="col" class="num c-usd">USD</th></tr></thead>
        <tbody></tbody>
      </table>
    </div>
    <p id="live-empty" class="empty">No calls yet. They appear here as agents make them.</p>
  </section>
  <div class="side">
    <!-- Approvals: hidden unless the server reports the feature (ConsoleFeatures in api.ts). -->
    <section id="approvals" class="panel" aria-labelledby="approvals-h" hidden>
      <h2 id="approvals-h">Approvals <small id="approvals-count"></small></h2>
      <p id="approvals-empty" class="empty">No calls are waiting for a person.</p>
      <div id="approval-list"></div>
    </section>
    <section id="spend" class="panel" aria-labelledby="spend-h">
      <h2 id="spend-h">Spend today <small>(UTC)</small></h2>
      <p class="legend"><span class="swatch spent"></span>settled <span class="swatch reserved"></span>reserved</p>
      <h3>Policies</h3>
      <div id="spend-policies" class="bars"></div>
      <h3>Agents</h3>
      <div id="spend-agents" class="bars"></div>
      <h3>Last 7 days</h3>
      <div id="spend-days" class="days"></div>
    </section>
  </div>
  <section id="actions" class="panel actions" aria-labelledby="actions-h" tabindex="-1">
    <h2 id="actions-h">Recent operator actions <small id="actions-count"></small></h2>
    <table id="actions-table" class="actions-table">
      <caption class="sr-only">The last 20 changes operators made (approve, deny, revoke, rotate, policy apply, vendor credentials, operators), newest first: when, who, what, and through which door.</caption>
      <thead><tr><th scope="col" class="c-when">Time</th><th scope="col" class="c-by">Who</th><th scope="col" class="c-what">Action</th><th scope="col" class="c-target">Target</th><th scope="col" class="c-via">Via</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="actions-empty" class="empty">No operator actions yet.</p>
  </section>
</main>
<dialog id="details" aria-labelledby="details-h">
  <h2 id="details-h">Call details</h2>
  <dl id="details-body"></dl>
  <div id="details-actions" class="actions revoke-actions"></div>
  <form method="dialog" class="actions"><button type="submit" class="quiet" autofocus>Close</button></form>
</dialog>
<dialog id="confirm" aria-labelledby="confirm-h">
  <form method="dialog" id="confirm-form">
    <h2 id="confirm-h">Revoke</h2>
    <p id="confirm-text"></p>
    <label for="confirm-reason">Reason (optional)</label>
    <input id="confirm-reason" name="reason" maxlength="500" autocomplete="off">
    <p id="confirm-error" class="error" role="alert" hidden></p>
    <div class="actions">
      <button type="submit" value="cancel" class="quiet" autofocus>Cancel</button>
      <button type="submit" value="revoke" class="danger" id="confirm-revoke">Revoke</button>
    </div>
  </form>
</dialog>
<dialog id="resume-confirm" aria-labelledby="resume-h">
  <form method="dialog" id="resume-form">
    <h2 id="resume-h">Resume</h2>
    <p id="resume-text"></p>
    <p id="resume-error" class="error" role="alert" hidden></p>
    <div class="actions">
      <button type="submit" value="cancel" class="quiet" autofocus>Cancel</button>
      <button type="submit" value="resume" id="resume-go">Resume</button>
    </div>
  </form>
</dialog>
<div id="toast" class="toast" role="status" aria-live="polite"></div>`,
  );
}

/** A small page for errors that are not the sign-in form's (a refused cross-site request, a disabled console). */
export function messagePage(urls: AssetUrls | undefined, title: string, message: string): string {
  return layout(
    urls,
    `${title} · leash console`,
    '',
    `<main class="signin"><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p><p><a href="/console">Back to the console</a></p></main>`,
  );
}
