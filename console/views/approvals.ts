// The Approvals panel: one card per pending request, keyed by its id and kept across refreshes (a note being
// typed survives), each with Deny and Approve. Shown only when the server offers the feature.
import { decide, SignedOut } from '../api.js';
import { byId, h, setText } from '../dom.js';
import { money, untilText, usd } from '../format.js';
import { toast } from '../notify.js';
import type { Approval } from '../types.js';

export interface ApprovalsView {
  render(list: Approval[]): void;
}

const argText = (v: unknown) => (typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v)));

export function approvalsView(decided: () => void): ApprovalsView {
  const cards = new Map<string, HTMLElement>();
  const box = byId('approval-list', HTMLElement);

  async function send(
    a: Approval,
    action: 'approve' | 'deny',
    note: string,
    card: HTMLElement,
    error: HTMLElement,
  ) {
    const buttons = card.querySelectorAll('button');
    for (const b of buttons) b.disabled = true;
    try {
      await decide(a.id, action, note.trim());
      cards.delete(a.id);
      card.remove();
      const whose = a.agent || 'unknown agent';
      toast(`${action === 'approve' ? 'Approved' : 'Denied'} the ${a.tool} request of ${whose}.`);
      decided();
    } catch (e) {
      if (e instanceof SignedOut) return;
      setText(error, `Not decided: ${e instanceof Error ? e.message : String(e)}`);
      error.hidden = false;
      for (const b of buttons) b.disabled = false;
    }
  }

  function card(a: Approval): HTMLElement {
    const args = Object.entries(a.request ?? {}).flatMap(([k, v]) => [
      h('dt', { text: k }),
      h('dd', { class: 'mono', text: argText(v) }),
    ]);
    const note = h('input', {
      maxlength: '500',
      autocomplete: 'off',
      'aria-label': `Note for the ${a.tool} request of ${a.agent || 'unknown agent'}`,
    });
    const error = h('p', { class: 'error', role: 'alert', hidden: true });
    // Money reads as money: the USD value admitted, and the vendor's own amount when it is in another currency.
    const own = a.amount !== null && a.currency ? money(a.amount, a.currency) : '';
    const amount = own && a.currency?.toLowerCase() !== 'usd' ? ` (${own})` : '';
    const who =
      `agent ${a.agent || '–'}${a.run_id ? `, run ${a.run_id}` : ''}, key ${a.key_id}` +
      `${a.policy ? `, policy ${a.policy}` : ''} · `;
    const button = (action: 'approve' | 'deny', label: string, cls: string) =>
      h(
        'button',
        {
          type: 'button',
          class: cls,
          'data-decide': action,
          onclick: () => void send(a, action, note.value, el, error),
        },
        label,
      );
    const el = h(
      'article',
      { class: 'agent-card approval', 'data-approval-id': a.id },
      h(
        'div',
        { class: 'card-head' },
        h('h3', { text: a.tool }),
        h('span', { class: 'count', text: usd(a.usd_micros) + amount }),
      ),
      h('p', { class: 'meta' }, who, h('span', { class: 'expiry' })),
      args.length ? h('dl', { class: 'args' }, args) : null,
      h('label', { class: 'note' }, 'Note ', note),
      error,
      h(
        'div',
        { class: 'actions' },
        button('deny', 'Deny', 'small danger'),
        button('approve', 'Approve', 'small'),
      ),
    );
    return el;
  }

  return {
    render(list) {
      const ids = new Set(list.map((a) => a.id));
      for (const [id, el] of cards)
        if (!ids.has(id)) {
          el.remove();
          cards.delete(id);
        }
      // Oldest first. A card is moved only when it is out of place: moving an element takes the focus from the note
      // an operator may be typing in it (the panel is re-rendered every few seconds and on every streamed row).
      let next = box.firstElementChild;
      for (const a of list) {
        let el = cards.get(a.id);
        if (!el) cards.set(a.id, (el = card(a)));
        if (el === next) next = el.nextElementSibling;
        else box.insertBefore(el, next);
        const expiry = el.querySelector('.expiry');
        if (expiry) setText(expiry, untilText(a.expires_at));
      }
      setText(byId('approvals-count', HTMLElement), list.length ? `(${list.length} waiting)` : '');
      byId('approvals-empty', HTMLElement).hidden = list.length > 0;
    },
  };
}
