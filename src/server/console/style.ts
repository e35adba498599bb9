/**
 * The console's stylesheet and icon, served from /console/assets/ (CSP allows only same-origin styles). Values
 * come from agents and may be long and unbroken: live table cells cut them (the row's details show all of it),
 * everything else wraps anywhere, and every grid or flex item that holds one may shrink (`min-width: 0`), so
 * no value makes the page wider than the window.
 */

export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#2457c5"/><path d="M9 7v18h14" stroke="#fff" stroke-width="4" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>`;

export const CONSOLE_CSS = `
:root {
  color-scheme: light dark;
  --bg: #f4f6f8; --fg: #1b1f24; --muted: #57606a; --card: #fff; --line: #d0d7de; --head: #eef1f4;
  --accent: #2457c5; --ok: #1a7f37; --bad: #c62828; --warn: #9a6700;
  --spent: #2457c5; --reserved: #a8c0f0; --flash: #fff3b0;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1216; --fg: #e6e9ed; --muted: #9aa4af; --card: #171b21; --line: #2d333b; --head: #1e242c;
    --accent: #6d9bff; --ok: #4ac26b; --bad: #ff6b6b; --warn: #d8a600;
    --spent: #6d9bff; --reserved: #34508a; --flash: #4a4320;
  }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.92em; }
h1 { font-size: 18px; margin: 0; display: flex; align-items: center; gap: 8px; }
h2 { font-size: 16px; margin: 0 0 10px; }
h2 small { font-weight: normal; color: var(--muted); }
h3 { font-size: 13px; margin: 14px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
a { color: var(--accent); }
.logo { width: 20px; height: 20px; border-radius: 5px; background: var(--accent); display: inline-block; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.skip { position: absolute; left: -999px; top: 8px; background: var(--card); padding: 6px 10px; z-index: 10; }
.skip:focus { left: 8px; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
button, input, select { font: inherit; color: inherit; }
button { cursor: pointer; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 6px; padding: 6px 12px; min-height: 32px; }
button.quiet { background: transparent; color: var(--fg); border-color: var(--line); }
button.danger { background: var(--bad); border-color: var(--bad); color: #fff; }
button.small { padding: 2px 8px; min-height: 28px; font-size: 12.5px; }
button.link { background: none; border: none; color: var(--accent); padding: 0; min-height: 0; text-decoration: underline; font-variant-numeric: tabular-nums; }
input, select { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 5px 8px; min-height: 32px; }
.error { color: var(--bad); font-weight: 600; }
.empty { color: var(--muted); }

.signin { max-width: 380px; margin: 12vh auto; padding: 24px; background: var(--card); border: 1px solid var(--line); border-radius: 10px; }
.signin form { display: grid; gap: 8px; margin: 18px 0 6px; }
.signin .hint { color: var(--muted); font-size: 13px; }

.topbar { display: flex; align-items: center; gap: 16px; padding: 10px 16px; background: var(--card); border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 5; }
.topbar .signout { margin-left: auto; }
.status { font-size: 13px; color: var(--muted); display: inline-flex; align-items: center; gap: 6px; }
.status::before { content: ""; width: 9px; height: 9px; border-radius: 50%; background: var(--muted); }
.status[data-state="live"]::before { background: var(--ok); }
.status[data-state="warn"]::before { background: var(--warn); }

.grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(320px, 400px); gap: 16px; padding: 16px; align-items: start; }
.side { display: grid; grid-template-columns: minmax(0, 1fr); gap: 16px; min-width: 0; }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px; min-width: 0; }
@media (max-width: 960px) { .grid { grid-template-columns: minmax(0, 1fr); padding: 10px; gap: 10px; } }

.filters { display: flex; flex-wrap: wrap; gap: 8px 12px; align-items: end; margin-bottom: 10px; }
.filters label { display: grid; gap: 2px; font-size: 12px; color: var(--muted); }
.filters input { width: 140px; }
.table-wrap { overflow: auto; max-height: calc(100vh - 210px); border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
thead th { position: sticky; top: 0; background: var(--head); font-size: 12px; color: var(--muted); }
td.num, th.num { text-align: right; }
tbody tr { cursor: pointer; }
/* Fixed layout: the table is as wide as its panel whatever a cell holds; agent, run, tool and decision share what
   time, outcome and USD leave, and cut a long value with an ellipsis (the row's details show all of it). */
#audit { table-layout: fixed; min-width: 36em; }
#audit th:nth-child(1) { width: 8.5em; }
#audit th:nth-child(6) { width: 7.5em; }
#audit th:nth-child(7) { width: 6.5em; }
#audit td { overflow: hidden; text-overflow: ellipsis; }
tbody tr:hover { background: var(--head); }
tr.flash { animation: flash 1.5s ease-out; }
@keyframes flash { from { background: var(--flash); } to { background: transparent; } }
.badge { display: inline-block; border-radius: 10px; padding: 0 7px; font-size: 12px; border: 1px solid currentColor; }
.badge.allowed, .badge.succeeded { color: var(--ok); }
.badge.denied, .badge.failed { color: var(--bad); }
.badge.pending, .badge.unknown, .badge.held { color: var(--warn); }
.badge.replay { color: var(--muted); border-style: dashed; }
.reason { color: var(--muted); font-size: 12px; margin-left: 4px; }
.est { color: var(--muted); }
@media (max-width: 640px) {
  th.opt, td.opt { display: none; }
  .filters input { width: 110px; }
  .table-wrap { max-height: 60vh; }
  th, td { padding: 4px 5px; font-size: 13px; }
}

.legend { font-size: 12px; color: var(--muted); margin: -4px 0 0; display: flex; align-items: center; gap: 6px; }
.swatch { width: 10px; height: 10px; border-radius: 2px; display: inline-block; }
.swatch.spent { background: var(--spent); }
.swatch.reserved { background: var(--reserved); margin-left: 8px; }
.bars { display: grid; gap: 8px; }
.bar-head { display: flex; justify-content: space-between; gap: 8px; font-size: 13px; }
.bar-label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-width: 0; }
.bar-value { font-variant-numeric: tabular-nums; white-space: nowrap; }
.track { height: 8px; border-radius: 4px; background: var(--head); display: flex; overflow: hidden; margin-top: 2px; }
.track .fill { height: 100%; }
.fill.spent { background: var(--spent); }
.fill.reserved { background: var(--reserved); }
.days { display: grid; grid-template-columns: repeat(7, minmax(0, 1fr)); gap: 6px; align-items: end; }
.day { display: grid; justify-items: center; gap: 2px; font-size: 11px; }
.day-value { color: var(--muted); font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden; max-width: 100%; min-height: 1.4em; }
.column { height: 64px; width: 100%; max-width: 36px; background: var(--head); border-radius: 4px; display: flex; flex-direction: column; justify-content: flex-end; overflow: hidden; }
.column .fill { width: 100%; }
.day-name { color: var(--muted); }
.bar.full .bar-value { color: var(--bad); font-weight: 600; }
.bar-note { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }

.agent-card { border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; margin-bottom: 10px; min-width: 0; overflow-wrap: anywhere; }
.card-head > *, .run-head > *, .keys-list li > * { min-width: 0; }
.card-head, .run-head { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
.card-head h3 { margin: 0; color: var(--fg); text-transform: none; letter-spacing: 0; font-size: 14px; }
.card-head .count { color: var(--muted); font-size: 12px; }
.card-head button, .run-head button { margin-left: auto; }
.run { margin-top: 8px; padding-left: 8px; border-left: 3px solid var(--line); }
.run-head { font-size: 13px; color: var(--muted); }
.keys-list { list-style: none; margin: 4px 0 0; padding: 0; display: grid; gap: 4px; }
.keys-list li { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 10px; font-size: 13px; }
.keys-list li button { margin-left: auto; }
.keys-list .meta { color: var(--muted); }
.keys-list .key-label { flex: 1 1 100%; max-height: 4.5em; overflow-y: auto; color: var(--muted); }

.approval .meta { margin: 4px 0; font-size: 12.5px; color: var(--muted); overflow-wrap: anywhere; }
.approval .args { display: grid; grid-template-columns: minmax(0, max-content) minmax(0, 1fr); gap: 2px 10px; margin: 6px 0; font-size: 12.5px; }
.approval .args dt { color: var(--muted); overflow-wrap: anywhere; }
.approval .args dd { margin: 0; overflow-wrap: anywhere; }
.approval .note { display: grid; gap: 2px; font-size: 12px; color: var(--muted); }
.approval .actions { display: flex; gap: 8px; justify-content: flex-end; margin-top: 8px; }
dialog { border: 1px solid var(--line); border-radius: 10px; background: var(--card); color: var(--fg); max-width: min(560px, 94vw); width: 100%; padding: 18px; }
dialog::backdrop { background: rgba(0, 0, 0, .45); }
dialog dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 4px 14px; margin: 0 0 14px; }
dialog p { overflow-wrap: anywhere; }
dialog dt { color: var(--muted); }
dialog dd { margin: 0; overflow-wrap: anywhere; }
dialog label { display: block; margin-bottom: 4px; }
dialog input { width: 100%; }
dialog .actions { display: flex; gap: 8px; justify-content: flex-end; margin-top: 14px; }
.toast { position: fixed; bottom: 16px; left: 50%; transform: translateX(-50%); background: var(--fg); color: var(--bg); padding: 8px 14px; border-radius: 8px; opacity: 0; transition: opacity .2s; pointer-events: none; max-width: 94vw; overflow-wrap: anywhere; }
.toast.show { opacity: 1; }
`;
