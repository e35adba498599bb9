// The two ways the console tells the operator something in passing: the status line in the top bar (is the live
// view live?) and a toast that fades after a few seconds (what a revoke or a decision did).
import { byId, setText } from './dom.js';

export type StatusState = 'connecting' | 'live' | 'warn';

export function setStatus(state: StatusState, text: string): void {
  const status = byId('status', HTMLElement);
  status.dataset.state = state;
  setText(status, text);
}

let toastTimer: ReturnType<typeof setTimeout> | undefined;

export function toast(text: string): void {
  const el = byId('toast', HTMLElement);
  setText(el, text);
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), 4000);
}
