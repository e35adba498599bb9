import { HIDDEN_CHARACTERS } from '../../audit/display-text.js';

/**
 * The console's browser script, served as /console/assets/console.js. Plain JavaScript (no build step, no
 * framework): it follows the audit stream, polls the overview, and builds every element with textContent,
 * so no server value is ever parsed as HTML, and every text it shows passes `shown` (displayText's twin), so
 * bidi overrides and other hidden characters read as ⟨U+202E⟩ markers. Kept free of backticks and dollar-brace
 * (but for the one pattern shared with displayText) so it can live in this template literal.
 */
export const CONSOLE_JS = String.raw`(() => {
  'use strict';
  const $ = (sel) => document.querySelector(sel);
  const csrf = $('meta[name="leash-csrf"]').getAttribute('content');
  const MAX_ROWS = 500;

  // Text as an operator reads it: a character that hides itself or reorders its neighbours becomes a visible marker.
  const HIDDEN = /${HIDDEN_CHARACTERS.source}/gu;
  const shown = (text) => String(text).replace(HIDDEN, (c) => '⟨U+' + c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0') + '⟩');

  // Every text and attribute a person may read passes shown(); data-* attributes are lookup keys, kept as sent.
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = shown(v);
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : k.startsWith('data-') ? String(v) : shown(v));
    }
    for (const kid of kids.flat()) {
      if (kid === undefined || kid === null || kid === false) continue;
      el.append(kid instanceof Node ? kid : shown(kid));
    }
    return el;
  }
  const usd = (micros) => {
    if (micros === null || micros === undefined) return '–';
    const v = micros / 1e6;
    return '$' + v.toFixed(v !== 0 && Math.abs(v) < 0.01 ? 4 : 2);
  };
  const pad = (n, w) => String(n).padStart(w || 2, '0');
  const clock = (iso) => {
    const d = new Date(iso);
    return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) + '.' + pad(d.getMilliseconds(), 3);
  };
  const fullTime = (iso) => (iso ? new Date(iso).toLocaleString() + ' (' + iso + ')' : '–');
  const untilText = (iso) => {
    if (!iso) return 'no expiry';
    const ms = new Date(iso).getTime() - Date.now();
    if (ms <= 0) return 'expired';
    const m = Math.round(ms / 60000);
    if (m < 60) return 'expires in ' + m + ' min';
    const hrs = Math.floor(m / 60);
    return hrs < 48 ? 'expires in ' + hrs + ' h ' + (m % 60) + ' min' : 'expires ' + new Date(iso).toLocaleDateString();
  };

  let toastTimer;
  function toast(text) {
    const t = $('#toast');
    t.textContent = shown(text);
    t.classList.add('show');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => t.classList.remove('show'), 4000);
  }
  function setStatus(state, text) {
    const s = $('#status');
    s.dataset.state = state;
    s.textContent = shown(text);
  }
  const signedOut = () => window.location.assign('/console');

  // ---- Live activity: one EventSource per filter; rows keyed by audit id, updated in place when they settle.
  const rows = new Map();
  const tbody = $('#audit tbody');
  let source;
  let reconnectTimer;

  function filterQuery() {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData($('#filters'))) if (String(v).trim()) q.set(k, String(v).trim());
    return q.toString();
  }
  function usdCell(r) {
    if (r.decision !== 'allowed') return h('td', { class: 'num' }, '–');
    if (r.cost_status === 'settled' || r.cost_status === 'none') return h('td', { class: 'num' }, usd(r.cost_micros));
    return h('td', { class: 'num', title: 'estimate, reserved until it settles' },
      h('span', { class: 'est', text: '~' + usd(r.reserved_micros + r.cost_micros) }));
  }
  function rowCells(r) {
    return [
      h('td', {}, h('button', { type: 'button', class: 'link', 'aria-label': 'Details of the ' + r.tool + ' call at ' + clock(r.ts), onclick: (e) => { e.stopPropagation(); showDetails(r.id); } }, clock(r.ts))),
      // Cells cut a long value with an ellipsis (style.ts); the title and the row's details hold all of it.
      h('td', { title: r.agent, text: r.agent }),
      h('td', { class: 'opt', title: r.run_id, text: r.run_id || '–' }),
      h('td', { title: r.tool, text: r.tool }),
      h('td', { title: r.decision !== 'allowed' ? r.reason : null }, h('span', { class: 'badge ' + r.decision, text: r.decision }), r.decision !== 'allowed' && r.reason ? h('span', { class: 'reason', text: r.reason }) : null),
      h('td', { class: 'opt' }, r.decision !== 'allowed' ? '–' : r.replay_of
        // A replay: the vendor answered with an earlier call's object; that call counts it, this one costs nothing.
        ? h('span', { class: 'badge replay', text: 'replay', title: 'replay of ' + r.replay_of })
        : h('span', { class: 'badge ' + r.outcome, text: r.outcome })),
      usdCell(r),
    ];
  }
  function upsert(r, settled) {
    const known = rows.get(r.id);
    if (known) {
      known.row = r;
      known.tr.replaceChildren(...rowCells(r));
      known.tr.dataset.outcome = r.outcome;
      known.tr.dataset.costStatus = r.cost_status;
      if (settled) {
        known.tr.classList.remove('flash');
        void known.tr.offsetWidth; // restart the animation
        known.tr.classList.add('flash');
      }
      return;
    }
    const tr = h('tr', { 'data-audit-id': r.id, 'data-outcome': r.outcome, 'data-cost-status': r.cost_status, onclick: () => showDetails(r.id) }, ...rowCells(r));
    rows.set(r.id, { row: r, tr });
    tbody.prepend(tr);
    while (rows.size > MAX_ROWS) {
      const oldest = tbody.lastElementChild;
      if (!oldest) break;
      rows.delete(oldest.getAttribute('data-audit-id'));
      oldest.remove();
    }
    $('#live-empty').hidden = rows.size > 0;
  }
  function connect() {
    clearTimeout(reconnectTimer);
    if (source) source.close();
    rows.clear();
    tbody.replaceChildren();
    $('#live-empty').hidden = false;
    setStatus('connecting', 'Connecting…');
    source = new EventSource('/console/api/stream?' + filterQuery());
    const own = source;
    source.addEventListener('row', (e) => { upsert(JSON.parse(e.data), false); refreshSoon(); });
    source.addEventListener('settle', (e) => { upsert(JSON.parse(e.data), true); refreshSoon(); });
    source.addEventListener('ready', () => setStatus('live', 'Live'));
    source.addEventListener('notice', (e) => setStatus('warn', JSON.parse(e.data).message));
    source.onerror = () => {
      if (own !== source) return;
      setStatus('warn', 'Reconnecting…');
      // A refused stream (signed out, too many streams) is not retried by the browser: check, then retry.
      if (source.readyState === EventSource.CLOSED) {
        checkSession().then((ok) => { if (ok) reconnectTimer = setTimeout(connect, 3000); });
      }
    };
  }
  async function checkSession() {
    try {
      const r = await fetch('/console/api/session', { cache: 'no-store' });
      if (r.status === 401) { signedOut(); return false; }
    } catch (e) { /* the server is away; the retry will tell */ }
    return true;
  }

  const FIELDS = [
    ['id', 'Audit id'], ['ts', 'Time'], ['agent', 'Agent'], ['run_id', 'Run'], ['key_id', 'Key'],
    ['policy', 'Policy'], ['policy_version', 'Policy version'], ['tool', 'Tool'], ['decision', 'Decision'],
    ['reason', 'Reason'], ['outcome', 'Outcome'], ['cost_status', 'Cost status'], ['cost_micros', 'Cost'],
    ['reserved_micros', 'Reserved'], ['amount', 'Amount'], ['currency', 'Currency'],
    ['vendor_object_id', 'Vendor object'], ['replay_of', 'Replay of'], ['latency_ms', 'Latency'], ['sandbox', 'Sandbox'],
  ];
  function showDetails(id) {
    const known = rows.get(id);
    if (!known) return;
    const r = known.row;
    const items = [];
    for (const [k, label] of FIELDS) {
      let v = r[k];
      if (v === null || v === undefined || v === '') v = '–';
      else if (k === 'ts') v = fullTime(v);
      else if (k === 'cost_micros' || k === 'reserved_micros') v = usd(v) + ' (' + v + ' micro-USD)';
      else if (k === 'latency_ms') v = v + ' ms';
      items.push(h('dt', { text: label }), h('dd', { class: k.endsWith('id') ? 'mono' : '', text: String(v) }));
    }
    $('#details-body').replaceChildren(...items);
    $('#details').showModal();
  }

  let filterTimer;
  $('#filters').addEventListener('input', () => { clearTimeout(filterTimer); filterTimer = setTimeout(connect, 350); });
  $('#filters').addEventListener('submit', (e) => { e.preventDefault(); connect(); });
  $('#filters').addEventListener('reset', () => setTimeout(connect, 0));

  // ---- Spend and keys: one overview read every 5 s while visible, and soon after calls stream in.
  let busy = false;
  let again = false;
  let soon;
  let lastKeys = '';
  let lastSpend = '';

  function refreshSoon() {
    if (soon) return;
    soon = setTimeout(() => { soon = undefined; refresh(); }, 1000);
  }
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const r = await fetch('/console/api/overview', { cache: 'no-store' });
      if (r.status === 401) return signedOut();
      if (!r.ok) throw new Error('overview: HTTP ' + r.status);
      render(await r.json());
    } catch (e) {
      setStatus('warn', 'Cannot reach leash');
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  function render(o) {
    $('#approvals').hidden = !(o.features && o.features.approvals);
    if (o.features && o.features.approvals) renderApprovals(o.approvals || []);
    const spendJson = JSON.stringify(o.spend);
    if (spendJson !== lastSpend) { lastSpend = spendJson; renderSpend(o.spend); }
    const keysJson = JSON.stringify(o.keys);
    if (keysJson !== lastKeys) { lastKeys = keysJson; renderKeys(o.keys); }
    renderUnknown(o.unknown);
  }
  // Calls whose outcome stayed unknown past LEASH_UNKNOWN_ALERT_AGE: a count above the spend panel, as the alert says.
  function renderUnknown(u) {
    let el = $('#unknown-outcomes');
    if (!el) { el = h('p', { id: 'unknown-outcomes', class: 'bar-note', role: 'status' }); $('#spend').before(el); }
    el.hidden = !(u && u.count);
    if (u && u.count) el.textContent = shown(plural(u.count, 'call') + ' with an unknown outcome for over ' + Math.round(u.older_than_seconds / 60) + ' min, reservations held (oldest: audit id ' + u.audit_ids[0] + '). Run leash reconcile; leash audit query --outcome unknown lists them.');
  }

  const plural = (n, word) => n + ' ' + word + (n === 1 ? '' : 's');
  const pct = (part, whole) => Math.max(0, Math.min(100, (part / whole) * 100)) + '%';
  function bar(label, o) {
    const scale = o.cap || o.max || 1;
    const spent = h('span', { class: 'fill spent' });
    const reserved = h('span', { class: 'fill reserved' });
    spent.style.width = pct(o.cost, scale);
    reserved.style.width = pct(o.reserved, scale);
    const held = o.cost + o.reserved;
    const value = usd(held) + (o.cap ? ' of ' + usd(o.cap) : '') + (o.reserved ? ' (' + usd(o.reserved) + ' reserved)' : '');
    return h('div', { class: 'bar' + (o.cap && held >= o.cap ? ' full' : ''), 'data-name': label },
      h('div', { class: 'bar-head' }, h('span', { class: 'bar-label', title: label, text: label }), h('span', { class: 'bar-value', text: value })),
      h('div', { class: 'track', 'aria-hidden': 'true' }, spent, reserved),
      o.note ? h('div', { class: 'bar-note', text: o.note }) : null);
  }
  function renderSpend(s) {
    const maxOf = (list) => Math.max(1, ...list.map((r) => r.held_micros));
    const policies = s.policies.filter((r) => r.group !== null);
    $('#spend-policies').replaceChildren(...(policies.length ? policies.map((r) => bar(r.group, {
      cost: r.cost_micros, reserved: r.reserved_micros, cap: r.cap_micros, max: maxOf(policies),
      note: plural(r.requests, 'call') + ', ' + r.denied + ' denied' + (r.cap_micros ? '' : ', no daily cap'),
    })) : [h('p', { class: 'empty', text: 'No calls today.' })]));
    const agents = s.agents.filter((r) => r.group !== null);
    $('#spend-agents').replaceChildren(...(agents.length ? agents.map((r) => bar(r.group, {
      cost: r.cost_micros, reserved: r.reserved_micros, cap: r.cap_micros, max: maxOf(agents),
      note: plural(r.requests, 'call') + ', ' + r.denied + ' denied' + (r.policy ? ' · counts against ' + r.policy + (r.cap_micros ? '’s daily cap' : ' (no daily cap)') : ''),
    })) : [h('p', { class: 'empty', text: 'No calls today.' })]));
    // The week as seven columns: settled below, reserved on top, scaled to the busiest day.
    const dayMax = maxOf(s.days);
    $('#spend-days').replaceChildren(...s.days.map((d) => {
      const date = new Date(d.day + 'T00:00:00Z');
      const name = date.toLocaleDateString([], { weekday: 'short', timeZone: 'UTC' });
      const full = date.toLocaleDateString([], { weekday: 'long', month: 'long', day: 'numeric', timeZone: 'UTC' });
      const spent = h('span', { class: 'fill spent' });
      const reserved = h('span', { class: 'fill reserved' });
      spent.style.height = pct(d.cost_micros, dayMax);
      reserved.style.height = pct(d.reserved_micros, dayMax);
      const summary = full + ': ' + usd(d.held_micros) + ', ' + plural(d.requests, 'call');
      return h('div', { class: 'day', 'data-day': d.day, title: summary },
        h('span', { class: 'sr-only', text: summary }),
        h('span', { class: 'day-value', 'aria-hidden': 'true', text: d.held_micros ? usd(d.held_micros) : '' }),
        h('span', { class: 'column', 'aria-hidden': 'true' }, reserved, spent),
        h('span', { class: 'day-name', 'aria-hidden': 'true', text: name }));
    }));
  }

  function renderKeys(keys) {
    const focused = document.activeElement && document.activeElement.getAttribute('data-focus');
    const byAgent = new Map();
    for (const k of keys) {
      if (!byAgent.has(k.agent)) byAgent.set(k.agent, new Map());
      const runs = byAgent.get(k.agent);
      const run = k.run_id || '';
      if (!runs.has(run)) runs.set(run, []);
      runs.get(run).push(k);
    }
    const cards = [];
    for (const [agent, runs] of byAgent) {
      const count = [...runs.values()].reduce((n, l) => n + l.length, 0);
      const runEls = [];
      for (const [run, list] of runs) {
        runEls.push(h('div', { class: 'run' },
          h('div', { class: 'run-head' }, h('span', { text: run ? 'run ' + run : 'no run id' }),
            run ? h('button', { type: 'button', class: 'small quiet', 'data-focus': 'run:' + run, 'aria-label': 'Revoke run ' + run,
              onclick: () => askRevoke({ run_id: run }, 'Revoke every active key of run "' + run + '" (' + list.length + ' key' + (list.length === 1 ? '' : 's') + ')? Their next call is refused.') }, 'Revoke run') : null),
          h('ul', { class: 'keys-list' }, ...list.map((k) => h('li', { 'data-key-id': k.id },
            h('code', { text: k.id }),
            h('span', { class: 'meta', text: k.policy + ' · ' + untilText(k.expires_at) + ' · ' + usd(k.held_micros) + (k.cap_micros ? ' of ' + usd(k.cap_micros) : '') + ' today' }),
            // A label is free text of any length: its own isolated, wrapping box (scrolls past a few lines).
            k.label ? h('bdi', { class: 'key-label', text: k.label }) : null,
            h('button', { type: 'button', class: 'small danger', 'data-focus': 'key:' + k.id, 'aria-label': 'Revoke key ' + k.id,
              onclick: () => askRevoke({ key_id: k.id }, 'Revoke key ' + k.id + ' (agent ' + k.agent + (k.run_id ? ', run ' + k.run_id : '') + ')? Its next call is refused.') }, 'Revoke'))))));
      }
      cards.push(h('div', { class: 'agent-card', 'data-agent': agent },
        h('div', { class: 'card-head' }, h('h3', { text: agent }), h('span', { class: 'count', text: count + ' key' + (count === 1 ? '' : 's') }),
          h('button', { type: 'button', class: 'small quiet', 'data-focus': 'agent:' + agent, 'aria-label': 'Revoke agent ' + agent,
            onclick: () => askRevoke({ agent }, 'Revoke every active key of agent "' + agent + '" (' + count + ' key' + (count === 1 ? '' : 's') + ')? Their next call is refused.') }, 'Revoke agent')),
        ...runEls));
    }
    $('#key-list').replaceChildren(...(cards.length ? cards : [h('p', { class: 'empty', text: 'No active keys.' })]));
    if (focused) {
      const again = [...document.querySelectorAll('[data-focus]')].find((el) => el.getAttribute('data-focus') === focused);
      if (again) again.focus();
    }
  }

  // ---- Approvals: cards keyed by request id, kept across refreshes so a note being typed survives.
  const approvalCards = new Map();
  function renderApprovals(list) {
    const ids = new Set(list.map((a) => a.id));
    for (const [id, card] of approvalCards) if (!ids.has(id)) { card.remove(); approvalCards.delete(id); }
    const box = $('#approval-list');
    for (const a of list) {
      let card = approvalCards.get(a.id);
      if (!card) { card = approvalCard(a); approvalCards.set(a.id, card); }
      box.append(card); // oldest first: append in order moves each to its place
      card.querySelector('.expiry').textContent = shown(untilText(a.expires_at));
    }
    $('#approvals-count').textContent = list.length ? '(' + list.length + ' waiting)' : '';
    $('#approvals-empty').hidden = list.length > 0;
  }
  function approvalCard(a) {
    const args = [];
    for (const [k, v] of Object.entries(a.request || {})) {
      args.push(h('dt', { text: k }), h('dd', { class: 'mono', text: typeof v === 'string' ? v : JSON.stringify(v) }));
    }
    const note = h('input', { maxlength: '500', autocomplete: 'off', 'aria-label': 'Note for the ' + a.tool + ' request of ' + (a.agent || 'unknown agent') });
    const error = h('p', { class: 'error', role: 'alert', hidden: true });
    const amount = a.amount !== null && a.currency ? ' · ' + a.amount + ' ' + String(a.currency).toUpperCase() + ' (minor units)' : '';
    const card = h('article', { class: 'agent-card approval', 'data-approval-id': a.id },
      h('div', { class: 'card-head' }, h('h3', { text: a.tool }), h('span', { class: 'count', text: usd(a.usd_micros) + amount })),
      h('p', { class: 'meta' }, 'agent ' + (a.agent || '–') + (a.run_id ? ', run ' + a.run_id : '') + ', key ' + a.key_id + (a.policy ? ', policy ' + a.policy : '') + ' · ', h('span', { class: 'expiry' })),
      args.length ? h('dl', { class: 'args' }, ...args) : null,
      h('label', { class: 'note' }, 'Note ', note),
      error,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'small danger', 'data-decide': 'deny', onclick: () => decide(a, 'deny', note, error, card) }, 'Deny'),
        h('button', { type: 'button', class: 'small', 'data-decide': 'approve', onclick: () => decide(a, 'approve', note, error, card) }, 'Approve')));
    return card;
  }
  async function decide(a, action, note, error, card) {
    for (const b of card.querySelectorAll('button')) b.disabled = true;
    try {
      const text = note.value.trim();
      const r = await fetch('/console/api/approvals/' + encodeURIComponent(a.id) + '/' + action, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-leash-csrf': csrf },
        body: JSON.stringify(text ? { note: text } : {}),
      });
      if (r.status === 401) return signedOut();
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error || 'HTTP ' + r.status);
      approvalCards.delete(a.id);
      card.remove();
      toast((action === 'approve' ? 'Approved' : 'Denied') + ' the ' + a.tool + ' request of ' + (a.agent || 'unknown agent') + '.');
      refresh();
    } catch (err) {
      error.textContent = shown('Not decided: ' + err.message);
      error.hidden = false;
      for (const b of card.querySelectorAll('button')) b.disabled = false;
    }
  }

  // ---- Revoke: one confirmation dialog, then POST with the session's CSRF token.
  let pending;
  function askRevoke(target, text) {
    pending = target;
    $('#confirm-text').textContent = shown(text);
    $('#confirm-reason').value = '';
    $('#confirm-error').hidden = true;
    $('#confirm').showModal();
  }
  $('#confirm-form').addEventListener('submit', async (e) => {
    if (!e.submitter || e.submitter.value !== 'revoke' || !pending) return; // Cancel closes the dialog
    e.preventDefault();
    const button = $('#confirm-revoke');
    button.disabled = true;
    try {
      const reason = $('#confirm-reason').value.trim();
      const r = await fetch('/console/api/revoke', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-leash-csrf': csrf },
        body: JSON.stringify(reason ? Object.assign({}, pending, { reason }) : pending),
      });
      if (r.status === 401) return signedOut();
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error || 'HTTP ' + r.status);
      $('#confirm').close();
      const n = body.revoked.length;
      toast(n ? 'Revoked ' + n + ' key' + (n === 1 ? '' : 's') + '.' : 'Nothing to revoke: already revoked or expired.');
      pending = undefined;
      refresh();
    } catch (err) {
      const el = $('#confirm-error');
      el.textContent = shown('Not revoked: ' + err.message);
      el.hidden = false;
    } finally {
      button.disabled = false;
    }
  });

  connect();
  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, 5000);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
})();
`;
