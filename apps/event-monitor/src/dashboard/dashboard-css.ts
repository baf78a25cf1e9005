/** The dashboard's stylesheet (served at /assets/dashboard.css; no build step). */
export const DASHBOARD_CSS = `
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #fff; --muted: #57606a; --line: #d0d7de; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --accent: #0550ae; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #30363d; --ok: #3fb950; --bad: #f85149; --warn: #d29922; --accent: #58a6ff; } }
body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 0; }
nav .logout { margin-left: auto; }
nav { display: flex; gap: 1rem; padding: .6rem 1rem; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
a { color: var(--accent); }
a:focus, button:focus, input:focus, select:focus, summary:focus { outline: 2px solid var(--accent); outline-offset: 2px; }
main { padding: 0 1rem 2rem; max-width: 1400px; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
.empty { color: var(--muted); }
.banner { background: var(--bad); color: #fff; padding: .5rem 1rem; }
.ok { color: var(--ok); } .error { color: var(--bad); }
.counts { display: flex; flex-wrap: wrap; gap: .4rem 1rem; list-style: none; padding: 0; }
.filters, .action { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin: .4rem 0; }
.bulk { display: flex; flex-wrap: wrap; gap: .4rem 1rem; margin: .4rem 0; }
.bulk-sample { columns: 16rem; padding-left: 1.2rem; }
.state { padding: 0 .4rem; border-radius: .6rem; border: 1px solid var(--line); }
.state-completed, .state-compensated { color: var(--ok); }
.state-failed, .state-compensation_failed, .state-cancelled { color: var(--bad); }
.state-running, .state-compensating, .state-cancelling, .state-waiting { color: var(--warn); }
.run-grid { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 1rem; }
@media (max-width: 1400px) { .run-grid { grid-template-columns: 1fr; } }
.events td:not(:last-child), .events th { overflow-wrap: normal; white-space: nowrap; }
@media (max-width: 700px) { .events td:not(:last-child), .events th { white-space: normal; } }
.gantt-row { display: flex; align-items: center; gap: .5rem; min-height: 1.6rem; }
.gantt-label { width: 12rem; flex: none; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.gantt-track { position: relative; flex: 1; height: 1rem; background: color-mix(in srgb, var(--line) 40%, transparent); }
.bar { position: absolute; top: 0; bottom: 0; background: var(--accent); border-radius: 2px; }
.bar-compensation { background: var(--warn); }
.bar-wait { background: repeating-linear-gradient(45deg, var(--muted) 0 4px, transparent 4px 8px); }
.outcome-failed, .outcome-timed_out { background: var(--bad); }
.gantt-axis { display: flex; justify-content: space-between; margin-left: 12.5rem; color: var(--muted); }
tr.failure td { color: var(--bad); }
pre { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 24rem; overflow: auto; }
`;

/**
 * The dashboard's only own script (served at /assets/dashboard.js): shows every `<time>` in the
 * browser's time zone, on load and after each htmx swap. The server renders UTC, so the pages
 * read fine without it.
 */
export const DASHBOARD_JS = `
(function () {
  function localize(root) {
    root.querySelectorAll('time[datetime]').forEach(function (el) {
      var d = new Date(el.getAttribute('datetime'));
      if (!isNaN(d.getTime())) { el.title = el.textContent; el.textContent = d.toLocaleString(); }
    });
  }
  document.addEventListener('DOMContentLoaded', function () { localize(document); });
  document.addEventListener('htmx:afterSwap', function (e) { localize(e.target); });
})();
`;
