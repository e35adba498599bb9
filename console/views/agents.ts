// The agents view, the first thing after sign-in: one row per active key, busiest first (calls in the last minute,
// then in the last 15), with its calls per minute as a sparkline, today's spend as a share of the cap nearest to
// stopping it, denials and the last call, and the revoke buttons for its key, its run and its agent. A paused key
// (or one whose run, agent or policy is paused) says so with a badge, why, and a Resume button. A table at
// desktop width, one card per key at phone width (console.css). Re-rendered on every overview read; the button that
// had focus gets it back.
import { byId, h } from '../dom.js';
import { ago, percent, plural, untilText, usd } from '../format.js';
import { sparkline } from '../sparkline.js';
import type { AgentRow, Agents } from '../types.js';
import { pauseReason, scopeText, type AskResume } from './resume.js';
import { revokeChoice, type AskRevoke, type RevokeKind } from './revoke.js';

/** The cap nearest to stopping the key (the larger share): its own daily cap or its policy's. */
function bindingCap(r: AgentRow): { used: number; cap: number; whose: 'key' | 'policy' } | null {
  const caps = [
    r.key_cap_micros ? { used: r.key_held_micros ?? 0, cap: r.key_cap_micros, whose: 'key' as const } : null,
    r.policy_cap_micros
      ? { used: r.policy_held_micros ?? 0, cap: r.policy_cap_micros, whose: 'policy' as const }
      : null,
  ].filter((c) => c !== null);
  return caps.sort((a, b) => b.used / b.cap - a.used / a.cap)[0] ?? null;
}

function spendCell(r: AgentRow): HTMLTableCellElement {
  const cap = bindingCap(r);
  if (!cap)
    return h(
      'td',
      { class: 'c-spend', 'data-label': 'Spend today' },
      h('span', { class: 'pct', text: usd(r.spent_today_micros) }),
      h('span', { class: 'sub', text: 'no daily cap' }),
    );
  const share = cap.used / cap.cap;
  const fill = h('span', { class: 'fill' });
  fill.style.width = `${Math.min(100, share * 100)}%`;
  const level = share >= 1 ? 'full' : share >= 0.8 ? 'high' : '';
  return h(
    'td',
    { class: `c-spend ${level}`, 'data-label': 'Spend today', 'data-share': share.toFixed(4) },
    h(
      'span',
      { class: 'pct-line' },
      h('span', { class: 'pct', text: percent(cap.used, cap.cap) }),
      h('span', {
        class: 'sub',
        text: cap.whose === 'key' ? ' of its key cap' : ` of policy ${r.policy}'s cap`,
      }),
    ),
    h('span', { class: 'meter', 'aria-hidden': 'true' }, fill),
    h('span', {
      class: 'sub',
      text:
        `${usd(cap.used)} of ${usd(cap.cap)}` +
        (cap.whose === 'key' ? '' : ` · this key ${usd(r.spent_today_micros)}`),
    }),
  );
}

/** A paused key's badge and why: the wire and its figures or who paused it, and the scope when not the key. */
function pausedLine(r: AgentRow): HTMLElement | null {
  const p = r.pause;
  if (!p) return null;
  const via = p.scope_kind === 'key' ? '' : ` (${scopeText(p)} is paused)`;
  return h(
    'span',
    { class: 'paused-line' },
    h('span', { class: 'badge paused', text: 'Paused' }),
    ' ',
    h('span', { class: 'pause-why', text: `${pauseReason(p)}${via}` }),
  );
}

function actions(r: AgentRow, ask: AskRevoke, askResume: AskResume): HTMLTableCellElement {
  const p = r.pause;
  const resumeButton = p
    ? h(
        'button',
        {
          type: 'button',
          class: 'small',
          'data-resume': p.scope_kind,
          'data-focus': `resume:${r.key_id}`,
          'aria-label': `Resume ${scopeText(p)}`,
          onclick: () => askResume(p),
        },
        'Resume',
      )
    : null;
  const button = (kind: RevokeKind, text: string) => {
    const choice = revokeChoice(r, kind);
    if (!choice) return null;
    const name = kind === 'key' ? r.key_id : kind === 'run' ? (r.run_id ?? '') : r.agent;
    return h(
      'button',
      {
        type: 'button',
        class: kind === 'key' ? 'small danger' : 'small quiet',
        'data-revoke': kind,
        'data-focus': `${kind}:${r.key_id}`,
        'aria-label': `Revoke ${kind} ${name}`,
        onclick: () => ask(choice.target, choice.question),
      },
      text,
    );
  };
  return h(
    'td',
    { class: 'c-actions', 'data-label': 'Revoke' },
    h(
      'div',
      { class: 'revoke-buttons' },
      resumeButton,
      button('key', 'Revoke key'),
      button('run', 'Run'),
      button('agent', 'Agent'),
    ),
  );
}

function row(r: AgentRow, now: string, ask: AskRevoke, askResume: AskResume): HTMLTableRowElement {
  const lastMinute = r.per_minute.at(-1) ?? 0;
  const peak = Math.max(0, ...r.per_minute);
  const words =
    `Calls per minute over the last ${r.per_minute.length} minutes: ` +
    `${lastMinute} in the last minute, at most ${peak}, ${plural(r.calls, 'call')} in all`;
  return h(
    'tr',
    {
      'data-key-id': r.key_id,
      'data-agent': r.agent,
      'data-active': lastMinute > 0 ? 'yes' : null,
      'data-paused': r.pause ? r.pause.scope_kind : null,
    },
    h(
      'td',
      { class: 'c-who', 'data-label': 'Agent' },
      h('span', { class: 'agent-name', title: r.agent, text: r.agent }),
      h('span', {
        class: 'sub',
        title: r.run_id ? `run ${r.run_id}` : null,
        text: r.run_id ? `run ${r.run_id}` : 'no run id',
      }),
      h('span', { class: 'sub mono', text: `key ${r.key_id} · ${r.policy} · ${untilText(r.expires_at)}` }),
      r.label ? h('bdi', { class: 'sub key-label', text: r.label }) : null,
      pausedLine(r),
    ),
    h(
      'td',
      { class: 'c-rate', 'data-label': 'Calls / min' },
      sparkline(r.per_minute, words),
      h('span', { class: 'rate', text: `${lastMinute}/min` }),
    ),
    spendCell(r),
    h('td', {
      class: `c-denied num${r.denied ? ' bad' : ''}`,
      'data-label': 'Denied (15 min)',
      text: r.denied,
    }),
    h(
      'td',
      { class: 'c-last', 'data-label': 'Last call', title: r.last_call },
      r.last_call ? ago(r.last_call, now) : 'none in 24 h',
    ),
    actions(r, ask, askResume),
  );
}

export interface AgentsView {
  render(agents: Agents, now: string): void;
}

export function agentsView(ask: AskRevoke, askResume: AskResume): AgentsView {
  const tbody = byId('agents-table', HTMLTableElement).tBodies[0];
  const empty = byId('agents-empty', HTMLElement);
  const count = byId('agents-count', HTMLElement);
  return {
    render(a, now) {
      if (!tbody) return;
      const focused = document.activeElement?.getAttribute('data-focus');
      tbody.replaceChildren(...a.rows.map((r) => row(r, now, ask, askResume)));
      empty.hidden = a.rows.length > 0;
      count.textContent =
        a.active_keys > a.rows.length
          ? `(the ${a.rows.length} busiest of ${a.active_keys} active keys)`
          : `(${plural(a.active_keys, 'active key')})`;
      if (focused)
        [...tbody.querySelectorAll<HTMLElement>('[data-focus]')]
          .find((el) => el.getAttribute('data-focus') === focused)
          ?.focus();
    },
  };
}
