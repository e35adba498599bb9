// The Keys panel: one card per agent, its keys grouped by run, each with a revoke button (a key, a run, or the
// whole agent). Re-rendered whole when the keys change; the button that had focus gets it back.
import { byId, h } from '../dom.js';
import { plural, untilText, usd } from '../format.js';
import type { ActiveKey, RevokeTarget } from '../types.js';

/** Asks the operator to confirm a revoke (views/revoke.ts), saying what it will do. */
export type AskRevoke = (target: RevokeTarget, question: string) => void;

function keyItem(k: ActiveKey, ask: AskRevoke): HTMLElement {
  const spend = usd(k.held_micros) + (k.cap_micros ? ` of ${usd(k.cap_micros)}` : '');
  return h(
    'li',
    { 'data-key-id': k.id },
    h('code', { text: k.id }),
    h('span', { class: 'meta', text: `${k.policy} · ${untilText(k.expires_at)} · ${spend} today` }),
    // A label is free text of any length: its own isolated, wrapping box (scrolls past a few lines).
    k.label ? h('bdi', { class: 'key-label', text: k.label }) : null,
    h(
      'button',
      {
        type: 'button',
        class: 'small danger',
        'data-focus': `key:${k.id}`,
        'aria-label': `Revoke key ${k.id}`,
        onclick: () =>
          ask(
            { key_id: k.id },
            `Revoke key ${k.id} (agent ${k.agent}${k.run_id ? `, run ${k.run_id}` : ''})? Its next call is refused.`,
          ),
      },
      'Revoke',
    ),
  );
}

function runBox(run: string, keys: ActiveKey[], ask: AskRevoke): HTMLElement {
  const revokeRun = run
    ? h(
        'button',
        {
          type: 'button',
          class: 'small quiet',
          'data-focus': `run:${run}`,
          'aria-label': `Revoke run ${run}`,
          onclick: () =>
            ask(
              { run_id: run },
              `Revoke every active key of run "${run}" (${plural(keys.length, 'key')})? Their next call is refused.`,
            ),
        },
        'Revoke run',
      )
    : null;
  return h(
    'div',
    { class: 'run' },
    h('div', { class: 'run-head' }, h('span', { text: run ? `run ${run}` : 'no run id' }), revokeRun),
    h('ul', { class: 'keys-list' }, ...keys.map((k) => keyItem(k, ask))),
  );
}

function agentCard(agent: string, runs: Map<string, ActiveKey[]>, ask: AskRevoke): HTMLElement {
  const count = [...runs.values()].reduce((n, list) => n + list.length, 0);
  return h(
    'div',
    { class: 'agent-card', 'data-agent': agent },
    h(
      'div',
      { class: 'card-head' },
      h('h3', { text: agent }),
      h('span', { class: 'count', text: plural(count, 'key') }),
      h(
        'button',
        {
          type: 'button',
          class: 'small quiet',
          'data-focus': `agent:${agent}`,
          'aria-label': `Revoke agent ${agent}`,
          onclick: () =>
            ask(
              { agent },
              `Revoke every active key of agent "${agent}" (${plural(count, 'key')})? Their next call is refused.`,
            ),
        },
        'Revoke agent',
      ),
    ),
    [...runs].map(([run, list]) => runBox(run, list, ask)),
  );
}

/** Keys by agent, then by run ('' for keys without one), in the server's order. */
function byAgentAndRun(keys: ActiveKey[]): Map<string, Map<string, ActiveKey[]>> {
  const agents = new Map<string, Map<string, ActiveKey[]>>();
  for (const k of keys) {
    let runs = agents.get(k.agent);
    if (!runs) agents.set(k.agent, (runs = new Map<string, ActiveKey[]>()));
    const run = k.run_id ?? '';
    let list = runs.get(run);
    if (!list) runs.set(run, (list = []));
    list.push(k);
  }
  return agents;
}

export function renderKeys(keys: ActiveKey[], ask: AskRevoke): void {
  const focused = document.activeElement?.getAttribute('data-focus');
  const cards = [...byAgentAndRun(keys)].map(([agent, runs]) => agentCard(agent, runs, ask));
  byId('key-list', HTMLElement).replaceChildren(
    ...(cards.length ? cards : [h('p', { class: 'empty', text: 'No active keys.' })]),
  );
  if (focused) {
    const again = [...document.querySelectorAll<HTMLElement>('[data-focus]')].find(
      (el) => el.getAttribute('data-focus') === focused,
    );
    again?.focus();
  }
}
