/**
 * The dashboard's pages and fragments, rendered on the server. Every value from a run, a request
 * or the broker goes through {@link html}, which escapes it: a payload holding `<script>` renders
 * as text.
 */
import {
  isTerminalRunState,
  RunState,
  type LifecycleEvent,
  type Run,
  type StepRecord,
} from '@multiagents/contracts';
import type { DeadLetter, TimelineEntry } from '@multiagents/core';
import type { MonitoredWorkerManager, StuckRunInfo } from '@multiagents/monitor';
import { html, raw, type SafeHtml } from './html';

/** The watchdog's derived states: `retrying` (live, waiting for a retry's backoff) and `stuck`. */
export const DERIVED_FILTERS: readonly string[] = ['retrying', 'stuck'];
/** The state filter's choices: every run state plus the derived ones. */
export const STATE_FILTERS: readonly string[] = [...Object.values(RunState), ...DERIVED_FILTERS];

/** What every page needs to know. */
export interface PageContext {
  /** The token every POST form carries. */
  readonly csrfToken: string;
  /** A problem to show as a banner (the orchestrator unreachable…), never a blank page. */
  readonly banner?: string;
  /** True when the user logged in with a token (authentication on): the page offers to log out. */
  readonly signedIn?: boolean;
}

/** The runs page's query, as parsed from the URL. */
export interface RunsQuery {
  readonly state?: string;
  readonly workflowId?: string;
  readonly txId?: string;
  readonly cursor?: string;
  /** Started on or after this UTC day (`YYYY-MM-DD`). */
  readonly from?: string;
  /** Started on or before this UTC day (`YYYY-MM-DD`). */
  readonly to?: string;
}

/** One page of the runs table. */
export interface RunsView {
  readonly query: RunsQuery;
  readonly rows: readonly RunRow[];
  readonly nextCursor?: string;
  readonly counts: Readonly<Record<string, number>>;
  /** True when actions reach an orchestrator: the page offers bulk actions on its filter. */
  readonly bulkEnabled?: boolean;
}

/** What a bulk action would do, shown before it is confirmed. */
export interface BulkView {
  readonly action: 'cancel' | 'retry';
  readonly query: RunsQuery;
  /** How many runs the action applies to now (at most the bulk limit). */
  readonly count: number;
  /** True when the filter selects more runs than one bulk action touches. */
  readonly truncated: boolean;
  readonly limit: number;
  /** When the runs were counted: only runs created by then are acted on. */
  readonly until: number;
  /** The first few of them. */
  readonly sample: readonly RunRow[];
}

/** What a confirmed bulk action did. */
export interface BulkDoneView {
  readonly action: 'cancel' | 'retry';
  readonly query: RunsQuery;
  readonly done: number;
  readonly skipped: number;
  readonly refused: number;
  readonly reasons: readonly string[];
}

/** One row of the runs table. */
export interface RunRow {
  readonly txId: string;
  readonly workflowId: string;
  readonly state: string;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** Everything the run page shows. */
export interface RunView {
  readonly run: Run;
  readonly timeline: readonly TimelineEntry[];
  readonly failuresOnly: boolean;
  /** Base address of Jaeger's UI, when configured. */
  readonly jaegerUrl?: string;
  /** False when no orchestrator address is configured: actions are not offered. */
  readonly actionsEnabled: boolean;
}

function time(ms: number | undefined): SafeHtml {
  if (ms === undefined) return html`—`;
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}">${iso.replace('T', ' ').replace('Z', ' UTC')}</time>`;
}

function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** A query string from `params`, without the empty ones. */
export function queryString(params: Readonly<Record<string, string | undefined>>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  const text = search.toString();
  return text === '' ? '' : `?${text}`;
}

/** The page around every view: navigation, the banner, htmx and its SSE extension. */
export function layout(title: string, ctx: PageContext, body: SafeHtml): SafeHtml {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · MultiAgents</title>
        <link rel="stylesheet" href="/assets/dashboard.css" />
        <script src="/assets/htmx.min.js"></script>
        <script src="/assets/sse.min.js"></script>
        <script src="/assets/dashboard.js"></script>
      </head>
      <body hx-headers='{"x-csrf-token": "${ctx.csrfToken}"}'>
        <nav>
          <a href="/">Runs</a> <a href="/stuck">Stuck</a> <a href="/dead-letters">Dead letters</a>
          <a href="/workers">Workers</a>
          ${
            ctx.signedIn === true
              ? html`<form method="post" action="/logout" class="logout">
                  <input type="hidden" name="_csrf" value="${ctx.csrfToken}" /><button type="submit">
                    Log out
                  </button>
                </form>`
              : ''
          }
        </nav>
        ${ctx.banner === undefined ? '' : html`<div class="banner" role="alert">${ctx.banner}</div>`}
        <div id="flash" role="status"></div>
        <main>
          <h1>${title}</h1>
          ${body}
        </main>
      </body>
    </html> `;
}

/** The runs table with its paging link (the fragment SSE refreshes). */
export function runsTable(view: RunsView): SafeHtml {
  const { query } = view;
  const rows = view.rows.map(
    (r) =>
      html`<tr>
        <td><a href="/runs/${encodeURIComponent(r.txId)}">${r.txId}</a></td>
        <td>${r.workflowId}</td>
        <td><span class="state state-${r.state}">${r.state}</span></td>
        <td>${time(r.createdAt)}</td>
        <td>${time(r.updatedAt)}</td>
      </tr>`,
  );
  const next =
    view.nextCursor === undefined
      ? ''
      : html`<a class="next" href="/${queryString({ ...query, cursor: view.nextCursor })}">Next page</a>`;
  return html`<table class="runs">
      <thead>
        <tr>
          <th>txId</th>
          <th>workflow</th>
          <th>state</th>
          <th>started</th>
          <th>updated</th>
        </tr>
      </thead>
      <tbody>
        ${
          rows.length === 0
            ? html`<tr>
                <td colspan="5" class="empty">No runs match.</td>
              </tr>`
            : rows
        }
      </tbody>
    </table>
    ${next}`;
}

/** The runs page: counts per state, filters, the table, live over SSE. */
export function runsPage(view: RunsView, ctx: PageContext): SafeHtml {
  const { query } = view;
  const counts = STATE_FILTERS.map((state) => {
    const n = view.counts[state];
    return n === undefined
      ? ''
      : html`<li><a href="/${queryString({ state })}">${state}</a> <b>${n}</b></li>`;
  });
  const options = STATE_FILTERS.map(
    (s) => html`<option value="${s}" ${query.state === s ? raw(' selected') : ''}>${s}</option>`,
  );
  const fragment = `/runs/table${queryString({ ...query })}`;
  return layout(
    'Runs',
    ctx,
    html`<ul class="counts">
        ${counts}
      </ul>
      <form class="filters" method="get" action="/">
        <label
          >State
          <select name="state">
            <option value="">any</option>
            ${options}
          </select></label
        >
        <label>Workflow <input name="workflowId" value="${query.workflowId ?? ''}" /></label>
        <label>txId <input name="txId" value="${query.txId ?? ''}" /></label>
        <label>From (UTC day) <input type="date" name="from" value="${query.from ?? ''}" /></label>
        <label>To <input type="date" name="to" value="${query.to ?? ''}" /></label>
        <button type="submit">Filter</button>
      </form>
      ${bulkLinks(view)}
      <div hx-ext="sse" sse-connect="/events">
        <div id="runs" hx-get="${fragment}" hx-trigger="sse:transition throttle:500ms">
          ${runsTable(view)}
        </div>
      </div>`,
  );
}

interface Bar {
  readonly row: string;
  readonly kind: 'attempt' | 'wait' | 'compensation';
  readonly label: string;
  readonly start: number;
  readonly end: number;
  readonly outcome: string;
  readonly open: boolean;
}

function barsOf(run: Run, now: number): Bar[] {
  const bars: Bar[] = [];
  const steps = Object.values(run.steps).filter((s) => s.startedAt !== undefined || s.attempts.length > 0);
  steps.sort((a, b) => (a.startedAt ?? 0) - (b.startedAt ?? 0));
  const attempts = (
    step: StepRecord,
    kind: Bar['kind'],
    list: StepRecord['attempts'],
    fallback: string,
  ): void => {
    for (const a of list) {
      bars.push({
        row: kind === 'compensation' ? `undo ${step.name}` : step.name,
        kind,
        label: `${kind === 'compensation' ? `undo ${step.name}` : step.name} #${a.attempt}`,
        start: a.startedAt,
        end: a.endedAt ?? now,
        outcome: a.outcome ?? fallback,
        open: a.endedAt === undefined,
      });
    }
  };
  for (const step of steps) {
    if (step.attempts.length > 0) attempts(step, 'attempt', step.attempts, step.status);
    else if (step.startedAt !== undefined)
      // A wait or a sleep: no attempt, one bar from when it began until it ended (or now).
      bars.push({
        row: step.name,
        kind: 'wait',
        label: step.name,
        start: step.startedAt,
        end: step.endedAt ?? now,
        outcome: step.status,
        open: step.endedAt === undefined,
      });
  }
  // Compensations after the forward steps, in the order they ran.
  const undone = steps
    .filter((s) => s.compensation !== undefined)
    .sort((a, b) => (a.compensation?.startedAt ?? 0) - (b.compensation?.startedAt ?? 0));
  for (const step of undone) {
    const c = step.compensation;
    if (c === undefined) continue;
    if (c.attempts.length > 0) attempts(step, 'compensation', c.attempts, c.status);
    else
      bars.push({
        row: `undo ${step.name}`,
        kind: 'compensation',
        label: `undo ${step.name}`,
        start: c.startedAt,
        end: c.endedAt ?? now,
        outcome: c.status,
        open: c.endedAt === undefined,
      });
  }
  return bars;
}

/** Every step's attempts, then each compensation, as bars on one time axis. */
export function gantt(run: Run, now: number): SafeHtml {
  const bars = barsOf(run, now);
  if (bars.length === 0) return html`<p class="empty">No step has started yet.</p>`;
  const t0 = Math.min(...bars.map((b) => b.start));
  const t1 = Math.max(...bars.map((b) => b.end), t0 + 1);
  const span = t1 - t0;
  const rows = [...new Set(bars.map((b) => b.row))];
  return html`<div class="gantt" role="list" aria-label="Timeline: ${duration(span)}">
    ${rows.map(
      (row) =>
        html`<div class="gantt-row" role="listitem">
          <span class="gantt-label">${row}</span
          ><span class="gantt-track"
            >${bars
              .filter((b) => b.row === row)
              .map((b) => {
                const left = (((b.start - t0) / span) * 100).toFixed(2);
                const width = Math.max(((b.end - b.start) / span) * 100, 0.5).toFixed(2);
                return html`<span
                  class="bar bar-${b.kind} outcome-${b.outcome}"
                  style="left:${left}%;width:${width}%"
                  title="${b.label}: ${b.outcome}, ${duration(b.end - b.start)}${b.open ? ' (running)' : ''}"
                  data-kind="${b.kind}"
                  data-step="${b.row}"
                ></span>`;
              })}</span
          >
        </div>`,
    )}
    <div class="gantt-axis"><span>0</span><span>${duration(span)}</span></div>
  </div>`;
}

function isFailure(event: LifecycleEvent): boolean {
  return /fail|timed_out|dead|error|stuck/.test(event.type);
}

/** The run's events, oldest first, optionally only its failures. */
export function eventLog(timeline: readonly TimelineEntry[], failuresOnly: boolean): SafeHtml {
  const rows = timeline.flatMap((entry) =>
    entry.events
      .filter((e) => !failuresOnly || isFailure(e))
      .map((e) => {
        const { type, state, step, attempt, ...details } = e;
        const extra = Object.keys(details).length === 0 ? '' : JSON.stringify(details);
        return html`<tr class="${isFailure(e) ? 'failure' : ''}">
          <td>${time(entry.time)}</td>
          <td>${type}</td>
          <td>${step ?? ''}${attempt === undefined ? '' : ` #${attempt}`}</td>
          <td>${state}</td>
          <td><code>${extra}</code></td>
        </tr>`;
      }),
  );
  return html`<table class="events">
    <thead>
      <tr>
        <th>time</th>
        <th>event</th>
        <th>step</th>
        <th>state</th>
        <th>details</th>
      </tr>
    </thead>
    <tbody>
      ${
        rows.length === 0
          ? html`<tr>
              <td colspan="5" class="empty">No events.</td>
            </tr>`
          : rows
      }
    </tbody>
  </table>`;
}

function json(label: string, value: unknown, open = false): SafeHtml {
  return html`<details${open ? raw(' open') : ''}><summary>${label}</summary><pre>${JSON.stringify(value, null, 2) ?? 'undefined'}</pre></details>`;
}

/** The trace id of a run from its W3C `traceparent` header, when it has one. */
export function traceIdOf(run: Run): string | undefined {
  const parent = run.traceHeaders?.['traceparent'];
  const match = parent === undefined ? null : /^[0-9a-f]{2}-([0-9a-f]{32})-/.exec(parent);
  return match?.[1];
}

function form(action: string, ctx: PageContext, label: string, fields: SafeHtml | string = ''): SafeHtml {
  return html`<form method="post" action="${action}" hx-post="${action}" hx-target="#flash" class="action">
    <input type="hidden" name="_csrf" value="${ctx.csrfToken}" />${fields}<button type="submit">
      ${label}
    </button>
  </form>`;
}

/** The actions the run's state allows. */
export function actions(run: Run, ctx: PageContext): SafeHtml {
  const base = `/runs/${encodeURIComponent(run.txId)}`;
  const out: SafeHtml[] = [];
  if (!isTerminalRunState(run.state)) {
    if (run.state !== RunState.Cancelling) out.push(form(`${base}/cancel`, ctx, 'Cancel run'));
    out.push(
      form(
        `${base}/signal`,
        ctx,
        'Send signal',
        html`<label>Signal <input name="name" required /></label
          ><label>Payload (JSON) <input name="payload" /></label>`,
      ),
    );
  }
  const failed = Object.values(run.steps).filter((s) => s.status === 'failed');
  if (run.state === RunState.Failed) {
    for (const step of failed) {
      out.push(
        form(
          `${base}/retry-step`,
          ctx,
          `Retry ${step.name}`,
          html`<input type="hidden" name="step" value="${step.name}" />`,
        ),
      );
      out.push(
        form(
          `${base}/skip-step`,
          ctx,
          `Skip ${step.name}`,
          html`<input type="hidden" name="step" value="${step.name}" /><label
              >Output (JSON) <input name="output"
            /></label>`,
        ),
      );
    }
  }
  if (run.state === RunState.CompensationFailed)
    out.push(form(`${base}/resume-compensation`, ctx, 'Resume compensation'));
  return out.length === 0 ? html`<p class="empty">No action applies in this state.</p>` : html`${out}`;
}

/** The part of the run page that SSE refreshes: state, timeline, events, data, actions. */
export function runLive(view: RunView, ctx: PageContext, now: number): SafeHtml {
  const { run } = view;
  const traceId = traceIdOf(run);
  const base = `/runs/${encodeURIComponent(run.txId)}`;
  return html`<p>
      Workflow <b>${run.workflowId}</b> v${run.workflowVersion} · state
      <span class="state state-${run.state}" id="run-state">${run.state}</span> · started
      ${time(run.createdAt)} · updated
      ${time(run.updatedAt)}${
        view.jaegerUrl !== undefined && traceId !== undefined
          ? html` ·
              <a href="${view.jaegerUrl.replace(/\/$/, '')}/trace/${traceId}" rel="noopener" target="_blank"
                >Trace in Jaeger</a
              >`
          : ''
      }
    </p>
    ${run.error === undefined ? '' : html`<p class="error">${run.error.code}: ${run.error.message}</p>`}
    <section class="actions">
      <h2>Actions</h2>
      ${view.actionsEnabled ? actions(run, ctx) : html`<p class="empty">Actions need MULTIAGENTS_ORCHESTRATOR_ADDRESS.</p>`}
    </section>
    <div class="run-grid">
      <section>
        <h2>Timeline</h2>
        ${gantt(run, now)}
      </section>
      <section>
        <h2>Events</h2>
        <p>
          <a href="${base}${view.failuresOnly ? '' : '?failures=1'}"
            >${view.failuresOnly ? 'Show all events' : 'Failures only'}</a
          >
        </p>
        ${eventLog(view.timeline, view.failuresOnly)}
      </section>
    </div>
    <section>
      <h2>Data</h2>
      ${json('Input', run.input)} ${json('Context', run.context)}
      ${Object.values(run.steps).map((s) => json(`Step ${s.name} (${s.status})`, { output: s.output, error: s.error }))}
    </section>`;
}

/** One run's page. */
export function runPage(view: RunView, ctx: PageContext, now: number): SafeHtml {
  const id = encodeURIComponent(view.run.txId);
  const live = `/runs/${id}/live${view.failuresOnly ? '?failures=1' : ''}`;
  return layout(
    `Run ${view.run.txId}`,
    ctx,
    html`<div hx-ext="sse" sse-connect="/events?txId=${id}">
      <div id="run-live" hx-get="${live}" hx-trigger="sse:transition">${runLive(view, ctx, now)}</div>
    </div>`,
  );
}

/** The stuck runs the watchdog lists. */
export function stuckPage(
  runs: readonly StuckRunInfo[],
  defaultThresholdMs: number,
  ctx: PageContext,
): SafeHtml {
  return layout(
    'Stuck runs',
    ctx,
    html`<p>Default threshold: ${duration(defaultThresholdMs)}.</p>
      <table>
        <thead>
          <tr>
            <th>txId</th>
            <th>workflow</th>
            <th>state</th>
            <th>last progress</th>
            <th>threshold</th>
            <th>steps</th>
          </tr>
        </thead>
        <tbody>
          ${
            runs.length === 0
              ? html`<tr>
                  <td colspan="6" class="empty">No stuck runs.</td>
                </tr>`
              : runs.map(
                  (r) =>
                    html`<tr>
                      <td><a href="/runs/${encodeURIComponent(r.txId)}">${r.txId}</a></td>
                      <td>${r.workflowId}</td>
                      <td>${r.state}</td>
                      <td>${time(r.lastProgressAt)}</td>
                      <td>${duration(r.thresholdMs)}</td>
                      <td>${r.steps.join(', ')}</td>
                    </tr>`,
                )
          }
        </tbody>
      </table>`,
  );
}

/** Dead letters with their reason, deliveries and payload, each replayable. */
/** One dead letter's or one topic's action: posts into the dead-letter section, which comes back redrawn. */
function letterForm(
  action: string,
  ctx: PageContext,
  label: string,
  fields: SafeHtml,
  confirm?: string,
): SafeHtml {
  return html`<form
    method="post"
    action="${action}"
    hx-post="${action}"
    hx-target="#letters"
    hx-swap="outerHTML"
    ${confirm === undefined ? '' : html`hx-confirm="${confirm}"`}
    class="action"
  >
    <input type="hidden" name="_csrf" value="${ctx.csrfToken}" />${fields}<button type="submit">
      ${label}
    </button>
  </form>`;
}

/**
 * The dead letters with their actions (replay, discard, replay all of a topic), and the answer
 * of the last action above them: what an action redraws in place.
 */
export function deadLettersSection(
  letters: readonly DeadLetter[],
  ctx: PageContext,
  answer?: { readonly message: string; readonly ok: boolean },
): SafeHtml {
  const payload = (l: DeadLetter): string =>
    l.envelope !== undefined ? JSON.stringify(l.envelope, null, 2) : Buffer.from(l.data).toString('utf8');
  const perTopic = new Map<string, number>();
  for (const l of letters) perTopic.set(l.topic, (perTopic.get(l.topic) ?? 0) + 1);
  const ids = (l: DeadLetter): SafeHtml =>
    html`<input type="hidden" name="topic" value="${l.topic}" /><input
        type="hidden"
        name="id"
        value="${l.id}"
      />`;
  return html`<div id="letters">
    ${answer === undefined ? '' : html`<p class="${answer.ok ? 'ok' : 'error'}" role="status">${answer.message}</p>`}
    <div class="bulk">
      ${[...perTopic].map(([topic, n]) =>
        letterForm(
          '/dead-letters/replay-all',
          ctx,
          `Replay all ${n} of ${topic}`,
          html`<input type="hidden" name="topic" value="${topic}" />`,
          `Replay all ${n} dead letters of ${topic}?`,
        ),
      )}
    </div>
    <table>
      <thead>
        <tr>
          <th>topic</th>
          <th>id</th>
          <th>reason</th>
          <th>deliveries</th>
          <th>dead since</th>
          <th>payload</th>
          <th></th>
        </tr>
      </thead>
      <tbody>
        ${
          letters.length === 0
            ? html`<tr>
                <td colspan="7" class="empty">No dead letters.</td>
              </tr>`
            : letters.map(
                (l) =>
                  html`<tr>
                    <td>${l.topic}</td>
                    <td>${l.id}</td>
                    <td>${l.error}</td>
                    <td>${l.deliveryCount}</td>
                    <td>${time(l.deadAt)}</td>
                    <td>
                      <details>
                        <summary>payload</summary>
                        <pre>${payload(l)}</pre>
                      </details>
                    </td>
                    <td>
                      ${letterForm('/dead-letters/replay', ctx, 'Replay', ids(l))}
                      ${letterForm(
                        '/dead-letters/discard',
                        ctx,
                        'Discard',
                        ids(l),
                        `Discard ${l.id} for good? It cannot be replayed afterwards.`,
                      )}
                    </td>
                  </tr>`,
              )
        }
      </tbody>
    </table>
  </div>`;
}

export function deadLettersPage(letters: readonly DeadLetter[], ctx: PageContext): SafeHtml {
  return layout('Dead letters', ctx, deadLettersSection(letters, ctx));
}

/** Worker-manager replicas, live and gone. */
export function workersPage(
  managers: readonly MonitoredWorkerManager[],
  ctx: PageContext,
  now: number,
): SafeHtml {
  return layout(
    'Workers',
    ctx,
    html`<table>
      <thead>
        <tr>
          <th>worker-manager</th>
          <th>status</th>
          <th>workers</th>
          <th>in flight / capacity</th>
          <th>last heartbeat</th>
        </tr>
      </thead>
      <tbody>
        ${
          managers.length === 0
            ? html`<tr>
                <td colspan="5" class="empty">No worker-manager has announced itself.</td>
              </tr>`
            : managers.map(
                (m) =>
                  html`<tr>
                    <td>${m.managerId}</td>
                    <td>${m.live ? 'live' : 'gone'}</td>
                    <td>${m.workers.join(', ')}</td>
                    <td>${m.inFlight} / ${m.capacity}</td>
                    <td>${time(m.seenAt)} (${duration(Math.max(0, now - m.seenAt))} ago)</td>
                  </tr>`,
              )
        }
      </tbody>
    </table>`,
  );
}

/** The filter a bulk action acts on, without the page's cursor. */
function filterOf(query: RunsQuery): Record<string, string | undefined> {
  return {
    state: query.state,
    workflowId: query.workflowId,
    txId: query.txId,
    from: query.from,
    to: query.to,
  };
}

function describeFilter(query: RunsQuery): string {
  const parts: string[] = [];
  if (query.state !== undefined) parts.push(`state ${query.state}`);
  if (query.workflowId !== undefined) parts.push(`workflow ${query.workflowId}`);
  if (query.txId !== undefined) parts.push(`txId ${query.txId}`);
  if (query.from !== undefined) parts.push(`started on or after ${query.from}`);
  if (query.to !== undefined) parts.push(`started on or before ${query.to}`);
  return parts.join(', ');
}

function bulkLinks(view: RunsView): SafeHtml | string {
  if (view.bulkEnabled !== true) return '';
  const filter = filterOf(view.query);
  if (Object.values(filter).every((v) => v === undefined))
    return html`<p class="bulk empty">Filter the runs to cancel or retry many of them at once.</p>`;
  return html`<p class="bulk">
    The runs this filter selects:
    <a href="/bulk${queryString({ action: 'cancel', ...filter })}">Cancel them…</a>
    <a href="/bulk${queryString({ action: 'retry', ...filter })}">Retry what failed in them…</a>
  </p>`;
}

const BULK_VERB = { cancel: 'Cancel', retry: 'Retry' } as const;

/** Says how many runs a bulk action would touch and asks for a confirmation (a POST). */
export function bulkConfirmPage(view: BulkView, ctx: PageContext): SafeHtml {
  const verb = BULK_VERB[view.action];
  const back = html`<p><a href="/${queryString(filterOf(view.query))}">Back to the runs</a></p>`;
  const what =
    view.action === 'cancel'
      ? 'Runs still going are cancelled: each undoes its completed steps.'
      : 'Failed runs have their failed steps run again; runs whose compensation failed resume it.';
  if (view.count === 0)
    return layout(
      `${verb} runs`,
      ctx,
      html`<p class="empty">
          No run the filter selects (${describeFilter(view.query)}) can be
          ${view.action === 'cancel' ? 'cancelled' : 'retried'} now.
        </p>
        ${back}`,
    );
  const hidden = Object.entries({
    ...filterOf(view.query),
    until: String(view.until),
    expected: String(view.count),
  })
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}" />`);
  const title = `${verb} ${view.count} run${view.count === 1 ? '' : 's'}?`;
  return layout(
    title,
    ctx,
    html`<p>
        ${view.count} run${view.count === 1 ? '' : 's'} selected by ${describeFilter(view.query)}, started by
        ${time(view.until)}.${
          view.truncated
            ? html` <b>The filter selects more: one bulk action touches at most ${view.limit}.</b>`
            : ''
        }
      </p>
      <p>
        ${what} Runs started after this page was opened are not touched; runs that ended meanwhile are
        skipped.
      </p>
      <ul class="bulk-sample">
        ${view.sample.map(
          (r) => html`<li><a href="/runs/${encodeURIComponent(r.txId)}">${r.txId}</a> ${r.state}</li>`,
        )}
        ${view.sample.length < view.count ? html`<li>… and ${view.count - view.sample.length} more</li>` : ''}
      </ul>
      <form method="post" action="/bulk/${view.action}" class="action bulk-confirm">
        <input type="hidden" name="_csrf" value="${ctx.csrfToken}" />${hidden}
        <button type="submit" autofocus>${verb} ${view.count} run${view.count === 1 ? '' : 's'}</button>
      </form>
      ${back}`,
  );
}

/** What a bulk action did: done, skipped (no longer applied) and refused, with the reasons. */
export function bulkDonePage(view: BulkDoneView, ctx: PageContext): SafeHtml {
  const past = view.action === 'cancel' ? 'Cancelled' : 'Retried';
  return layout(
    `${BULK_VERB[view.action]}: done`,
    ctx,
    html`<p class="${view.refused === 0 ? 'ok' : 'error'}" id="bulk-result">
        ${past} ${view.done} run${view.done === 1 ? '' : 's'}; ${view.skipped} skipped (they no longer allowed
        it); ${view.refused} refused.
      </p>
      ${
        view.reasons.length === 0
          ? ''
          : html`<ul class="error">
              ${view.reasons.map((r) => html`<li>${r}</li>`)}
            </ul>`
      }
      <p><a href="/${queryString(filterOf(view.query))}">Back to the runs</a></p>`,
  );
}

/** A page for what does not exist (never a stack trace). */
export function messagePage(title: string, message: string, ctx: PageContext): SafeHtml {
  return layout(
    title,
    ctx,
    html`<p>${message}</p>
      <p><a href="/">Back to the runs</a></p>`,
  );
}

/** Asks for a token (authentication on); it is kept in an HttpOnly cookie, never in the page. */
export function loginPage(ctx: PageContext): SafeHtml {
  return layout(
    'Log in',
    ctx,
    html`<form method="post" action="/login" class="action">
        <input type="hidden" name="_csrf" value="${ctx.csrfToken}" />
        <label>Token <input type="password" name="token" autocomplete="off" required /></label>
        <button type="submit">Log in</button>
      </form>
      <p>The token of a caller of the MultiAgents API (a JWT); the dashboard's actions use it.</p>`,
  );
}

/** The flash message an action answers into `#flash`. */
export function flash(message: string, ok: boolean): SafeHtml {
  return html`<p class="${ok ? 'ok' : 'error'}">${message}</p>`;
}
