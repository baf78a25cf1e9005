/**
 * The dashboard behind the event-monitor's HTTP port: runs (from the run store: exact counts,
 * cursor paging), one run (its record, its timeline from the monitor, actions through the
 * orchestrator's gRPC API), stuck runs, dead letters and workers, with live updates over
 * Server-Sent Events. Actions are POSTs that carry the page's CSRF token and come from the same
 * origin; nothing is fetched from elsewhere (htmx is served from node_modules).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Envelope, Run, RunState } from '@multiagents/contracts';
import type { Logger, RunFilter, RunStore, TimelineEntry } from '@multiagents/core';
import type { EventMonitor } from '@multiagents/monitor';
import type { DashboardActions } from './dashboard-actions';
import { isBulkAction, MAX_BULK_RUNS, runBulk, selectForBulk, type BulkAction } from './bulk';
import { DASHBOARD_CSS, DASHBOARD_JS } from './dashboard-css';
import type { SafeHtml } from './html';
import {
  bulkConfirmPage,
  bulkDonePage,
  deadLettersPage,
  deadLettersSection,
  flash,
  loginPage,
  messagePage,
  runLive,
  runPage,
  runsPage,
  runsTable,
  DERIVED_FILTERS,
  STATE_FILTERS,
  stuckPage,
  workersPage,
  type BulkView,
  type PageContext,
  type RunsQuery,
  type RunsView,
  type RunView,
} from './views';

/** Runs per page of the runs table. */
export const DEFAULT_DASHBOARD_PAGE_SIZE = 50;
/** Events kept for `Last-Event-ID` resume of the live stream. */
export const DEFAULT_EVENT_BUFFER = 1000;
const MAX_BODY_BYTES = 64 * 1024;
/** Runs a bulk action's confirmation lists by txId. */
const BULK_SAMPLE = 20;

export type { DashboardActions } from './dashboard-actions';

/** Who a browser is, when the services check credentials (the event-monitor's Authorizer). */
export interface DashboardAuth {
  /** Verifies a bearer token (throws when it is not valid). */
  authenticate(
    token: string,
  ): Promise<{ readonly subject: string; readonly role: string; readonly workflows?: ReadonlySet<string> }>;
  /** The orchestrator's API acting with the user's own token (absent: no actions). */
  readonly actionsFor?: (token: string) => DashboardActions;
}

/** The cookie that holds the token a browser logged in with (HttpOnly, SameSite=Strict). */
export const DASHBOARD_TOKEN_COOKIE = 'multiagents_token';

/** Options of {@link Dashboard}. */
export interface DashboardOptions {
  readonly runs: Pick<RunStore, 'list' | 'get' | 'countByState'>;
  readonly monitor: Pick<
    EventMonitor,
    | 'getTimeline'
    | 'listStuckRuns'
    | 'listRetryingRuns'
    | 'listDeadLetters'
    | 'replayDeadLetter'
    | 'discardDeadLetter'
    | 'listWorkers'
    | 'watchEvents'
  >;
  /** The orchestrator's API; without it the run page offers no action. */
  readonly actions?: DashboardActions;
  /**
   * When set, every page but the login page needs a valid token (kept in an HttpOnly cookie) and
   * actions act with that token, never with one of the monitor's.
   */
  readonly auth?: DashboardAuth;
  /** The watchdog's default threshold, shown on the stuck page. */
  readonly stuckThresholdMs: number;
  /** Base address of Jaeger's UI (`<base>/trace/<traceId>`). */
  readonly jaegerUrl?: string;
  readonly pageSize?: number;
  /** The CSRF token (default: random per process). */
  readonly csrfToken?: string;
  readonly logger?: Logger;
  readonly now?: () => number;
}

interface Reply {
  readonly status: number;
  readonly body: string | SafeHtml;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};

function assetFile(specifier: string): () => string {
  let text: string | undefined;
  return () => (text ??= readFileSync(require.resolve(specifier), 'utf8'));
}

const ASSETS: Readonly<Record<string, { type: string; read: () => string }>> = {
  '/assets/htmx.min.js': { type: 'text/javascript', read: assetFile('htmx.org/dist/htmx.min.js') },
  '/assets/sse.min.js': { type: 'text/javascript', read: assetFile('htmx-ext-sse/dist/sse.min.js') },
  '/assets/dashboard.css': { type: 'text/css', read: () => DASHBOARD_CSS },
  '/assets/dashboard.js': { type: 'text/javascript', read: () => DASHBOARD_JS },
};

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function optionalJson(raw: string | undefined, field: string): unknown {
  if (raw === undefined || raw.trim() === '') return undefined;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    throw new HttpError(400, `${field} is not valid JSON`);
  }
}

/** Serves the dashboard; hand it every request the health server does not answer. */
export class Dashboard {
  private readonly csrfToken: string;
  private readonly pageSize: number;
  private readonly now: () => number;
  private readonly recent: Envelope[] = [];
  private readonly streams = new Set<{ txId?: string; res: ServerResponse }>();
  private stopWatching: (() => void) | undefined;
  private watching: Promise<void> | undefined;
  private closed = false;
  private keepAlive: NodeJS.Timeout | undefined;

  constructor(private readonly options: DashboardOptions) {
    this.csrfToken = options.csrfToken ?? randomBytes(24).toString('hex');
    this.pageSize = options.pageSize ?? DEFAULT_DASHBOARD_PAGE_SIZE;
    this.now = options.now ?? Date.now;
  }

  /** Keeps open event streams alive (the feed itself is followed from the first stream on). */
  start(): void {
    this.keepAlive = setInterval(() => {
      for (const { res } of this.streams) res.write(': keep-alive\n\n');
    }, 15_000);
    this.keepAlive.unref();
  }

  /**
   * Follows the monitor's event feed from the first page that asks for live updates, not at
   * start: a watcher opens a consumer group of the replica's own, which a monitor nobody looks
   * at should not leave behind at every restart.
   */
  private watch(): void {
    if (this.watching !== undefined) return;
    this.watching = this.options.monitor
      .watchEvents({}, (envelope) => this.publish(envelope))
      .then(
        (stop) => {
          if (this.closed) stop();
          else this.stopWatching = stop;
        },
        (err: unknown) => {
          this.watching = undefined;
          this.options.logger?.error({ err }, 'dashboard could not follow the event feed');
        },
      );
  }

  /** True once the event feed is followed (from the first stream on; for /stats). */
  get following(): boolean {
    return this.stopWatching !== undefined;
  }

  /** Event streams open now (for /stats). */
  get openStreams(): number {
    return this.streams.size;
  }

  /** Ends the live streams and stops following the feed. */
  close(): void {
    this.closed = true;
    this.stopWatching?.();
    if (this.keepAlive !== undefined) clearInterval(this.keepAlive);
    for (const { res } of this.streams) res.end();
    this.streams.clear();
  }

  /** Answers one request (pages, fragments, assets, actions, the event stream). */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    this.identify(req, url).then(
      (user) => {
        if (user === 'refused') {
          if (req.method === 'GET' || req.method === 'HEAD')
            this.send(res, { status: 303, body: '', headers: { location: '/login' } });
          else
            this.send(res, { status: 401, body: messagePage('Log in', 'Log in first: /login.', this.ctx()) });
          return;
        }
        this.serve(req, res, url, user);
      },
      (err: unknown) => {
        this.options.logger?.error({ err }, 'dashboard authentication failed');
        this.send(res, {
          status: 500,
          body: messagePage('Error', 'The dashboard could not answer this request.', this.ctx()),
        });
      },
    );
  }

  /** The user's token (auth on), undefined (auth off or a public path), or 'refused'. */
  private async identify(req: IncomingMessage, url: URL): Promise<User | undefined | 'refused'> {
    const auth = this.options.auth;
    if (auth === undefined || url.pathname.startsWith('/assets/') || url.pathname === '/login')
      return undefined;
    const token = cookieOf(req, DASHBOARD_TOKEN_COOKIE);
    if (token === undefined) return 'refused';
    try {
      const principal = await auth.authenticate(token);
      // The pages list every run, dead letter and worker: not for callers limited to some workflows.
      if (principal.workflows !== undefined) return 'refused';
      return { token, role: principal.role };
    } catch {
      return 'refused';
    }
  }

  private serve(req: IncomingMessage, res: ServerResponse, url: URL, user: User | undefined): void {
    if (req.method === 'GET' && url.pathname === '/events') {
      this.openStream(req, res, url);
      return;
    }
    this.route(req, url, user).then(
      (reply) => this.send(res, reply),
      (err: unknown) => {
        const status = err instanceof HttpError ? err.status : 500;
        if (status === 500)
          this.options.logger?.error({ err, path: url.pathname }, 'dashboard request failed');
        const text = err instanceof HttpError ? err.message : 'The dashboard could not answer this request.';
        this.send(res, {
          status,
          body: messagePage(status === 404 ? 'Not found' : 'Error', text, this.ctx()),
        });
      },
    );
  }

  private send(res: ServerResponse, reply: Reply): void {
    res.writeHead(reply.status, {
      ...SECURITY_HEADERS,
      'content-type': reply.contentType ?? 'text/html; charset=utf-8',
      ...reply.headers,
    });
    res.end(typeof reply.body === 'string' ? reply.body : reply.body.value);
  }

  private ctx(banner?: string, user?: User): PageContext {
    return {
      csrfToken: this.csrfToken,
      ...(banner === undefined ? {} : { banner }),
      ...(user === undefined ? {} : { signedIn: true }),
    };
  }

  private async route(req: IncomingMessage, url: URL, user: User | undefined): Promise<Reply> {
    const path = url.pathname;
    if (path === '/login' && this.options.auth !== undefined) {
      if (req.method === 'POST') return this.login(req);
      return { status: 200, body: loginPage(this.ctx()) };
    }
    if (req.method === 'POST') return this.post(req, path, user);
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'Method not allowed.');
    const asset = ASSETS[path];
    if (asset !== undefined)
      return {
        status: 200,
        body: asset.read(),
        contentType: asset.type,
        headers: { 'cache-control': 'max-age=3600' },
      };
    if (path === '/')
      return {
        status: 200,
        body: runsPage(
          { ...(await this.runsView(url)), bulkEnabled: this.actionsEnabled },
          this.ctx(undefined, user),
        ),
      };
    if (path === '/runs/table') return { status: 200, body: runsTable(await this.runsView(url)) };
    if (path === '/stuck') {
      return {
        status: 200,
        body: stuckPage(
          await this.options.monitor.listStuckRuns(),
          this.options.stuckThresholdMs,
          this.ctx(undefined, user),
        ),
      };
    }
    if (path === '/dead-letters')
      return {
        status: 200,
        body: deadLettersPage(await this.options.monitor.listDeadLetters(), this.ctx(undefined, user)),
      };
    if (path === '/workers')
      return {
        status: 200,
        body: workersPage(await this.options.monitor.listWorkers(), this.ctx(undefined, user), this.now()),
      };
    if (path === '/bulk')
      return { status: 200, body: bulkConfirmPage(await this.bulkView(url), this.ctx(undefined, user)) };
    const run = /^\/runs\/([^/]+)(\/live)?$/.exec(path);
    if (run !== null) {
      const view = await this.runView(
        decodeURIComponent(run[1] ?? ''),
        url.searchParams.get('failures') === '1',
      );
      return {
        status: 200,
        body:
          run[2] === undefined
            ? runPage(view, this.ctx(undefined, user), this.now())
            : runLive(view, this.ctx(undefined, user), this.now()),
      };
    }
    throw new HttpError(404, 'There is no such page.');
  }

  /** Parses the runs query; unknown states are refused rather than ignored. */
  parseRunsQuery(url: URL): RunsQuery {
    const get = (name: string): string | undefined => {
      const value = url.searchParams.get(name)?.trim();
      return value === undefined || value === '' ? undefined : value;
    };
    const state = get('state');
    if (state !== undefined && !STATE_FILTERS.includes(state))
      throw new HttpError(400, `Unknown state "${state}".`);
    const query: { -readonly [K in keyof RunsQuery]: RunsQuery[K] } = {};
    if (state !== undefined) query.state = state;
    const workflowId = get('workflowId');
    if (workflowId !== undefined) query.workflowId = workflowId;
    const txId = get('txId');
    if (txId !== undefined) query.txId = txId;
    const cursor = get('cursor');
    if (cursor !== undefined) query.cursor = cursor;
    for (const bound of ['from', 'to'] as const) {
      const day = get(bound);
      if (day === undefined) continue;
      if (!/^\d{4}-\d{2}-\d{2}$/.test(day) || Number.isNaN(Date.parse(`${day}T00:00:00Z`))) {
        throw new HttpError(400, `"${bound}" must be a day (YYYY-MM-DD).`);
      }
      query[bound] = day;
    }
    return query;
  }

  private async runsView(url: URL): Promise<RunsView> {
    const query = this.parseRunsQuery(url);
    const counts: Record<string, number> = { ...(await this.options.runs.countByState()) };
    const stuck = await this.options.monitor.listStuckRuns(
      query.workflowId === undefined ? {} : { workflowId: query.workflowId },
    );
    counts['stuck'] = stuck.length;
    const retrying = await this.options.monitor.listRetryingRuns(
      query.workflowId === undefined ? {} : { workflowId: query.workflowId },
    );
    counts['retrying'] = retrying.length;
    if (query.txId !== undefined) {
      const found = await this.options.runs.get(query.txId);
      const rows = found === undefined ? [] : [found.run];
      return { query, counts, rows: rows.filter((r) => this.matches(r, query)).map(rowOf) };
    }
    // The derived states come from the monitor (the watchdog's last scan; the retrying runs as read
    // at most once per scan interval): the run store has no index of them.
    if (query.state === 'stuck' || query.state === 'retrying') {
      const listed =
        query.state === 'stuck'
          ? stuck.map((s) => ({ ...s, at: s.lastProgressAt }))
          : retrying.map((r) => ({ ...r, at: r.updatedAt }));
      return {
        query,
        counts,
        rows: listed.map((r) => ({
          txId: r.txId,
          workflowId: r.workflowId,
          state: r.state,
          createdAt: r.at,
          updatedAt: r.at,
        })),
      };
    }
    const filter: { -readonly [K in keyof RunFilter]: RunFilter[K] } = {};
    if (query.state !== undefined) filter.state = query.state as RunState;
    if (query.workflowId !== undefined) filter.workflowId = query.workflowId;
    if (query.from !== undefined) filter.createdAfter = Date.parse(`${query.from}T00:00:00Z`);
    if (query.to !== undefined) filter.createdBefore = Date.parse(`${query.to}T23:59:59.999Z`);
    const page = await this.options.runs.list(filter, this.pageSize, query.cursor);
    return {
      query,
      counts,
      rows: page.runs.map(rowOf),
      ...(page.nextCursor === undefined ? {} : { nextCursor: page.nextCursor }),
    };
  }

  private matches(run: Run, query: RunsQuery): boolean {
    if (query.workflowId !== undefined && run.workflowId !== query.workflowId) return false;
    if (query.state !== undefined && !DERIVED_FILTERS.includes(query.state) && run.state !== query.state)
      return false;
    if (query.from !== undefined && run.createdAt < Date.parse(`${query.from}T00:00:00Z`)) return false;
    if (query.to !== undefined && run.createdAt > Date.parse(`${query.to}T23:59:59.999Z`)) return false;
    return true;
  }

  private async runView(txId: string, failuresOnly: boolean): Promise<RunView> {
    const stored = await this.options.runs.get(txId);
    if (stored === undefined) throw new HttpError(404, `No run has the txId "${txId}".`);
    let timeline: readonly TimelineEntry[] = [];
    try {
      timeline = (await this.options.monitor.getTimeline(txId)).entries;
    } catch {
      // A run the monitor has not seen yet (or whose timeline expired) still shows its record.
    }
    return {
      run: stored.run,
      timeline,
      failuresOnly,
      actionsEnabled: this.actionsEnabled,
      ...(this.options.jaegerUrl === undefined ? {} : { jaegerUrl: this.options.jaegerUrl }),
    };
  }

  /** True when the request is a same-origin POST carrying the CSRF token. */
  checkCsrf(req: IncomingMessage, form: URLSearchParams): boolean {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let host: string;
      try {
        host = new URL(origin).host;
      } catch {
        return false;
      }
      if (host !== req.headers.host) return false;
    } else if (origin === 'null') return false;
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') return false;
    const header = req.headers['x-csrf-token'];
    const given = form.get('_csrf') ?? (typeof header === 'string' ? header : '');
    const a = Buffer.from(given);
    const b = Buffer.from(this.csrfToken);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  private async readForm(req: IncomingMessage): Promise<URLSearchParams> {
    const type = req.headers['content-type'] ?? '';
    if (!type.startsWith('application/x-www-form-urlencoded'))
      throw new HttpError(415, 'Actions are form posts.');
    const form = new URLSearchParams(await readBody(req));
    if (!this.checkCsrf(req, form))
      throw new HttpError(403, 'This action did not come from the dashboard (CSRF check failed).');
    return form;
  }

  private async login(req: IncomingMessage): Promise<Reply> {
    const form = await this.readForm(req);
    const token = (form.get('token') ?? '').trim().replace(/^Bearer\s+/i, '');
    const auth = this.options.auth;
    if (auth === undefined) throw new HttpError(404, 'There is no such page.');
    try {
      const principal = await auth.authenticate(token);
      if (principal.workflows !== undefined) throw new Error('limited to some workflows');
    } catch {
      return { status: 401, body: loginPage(this.ctx('That token was refused.')) };
    }
    return {
      status: 303,
      body: '',
      headers: {
        location: '/',
        'set-cookie': `${DASHBOARD_TOKEN_COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
      },
    };
  }

  private async post(req: IncomingMessage, path: string, user: User | undefined): Promise<Reply> {
    const form = await this.readForm(req);
    if (path === '/logout') {
      return {
        status: 303,
        body: '',
        headers: {
          location: '/login',
          'set-cookie': `${DASHBOARD_TOKEN_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`,
        },
      };
    }
    const htmx = req.headers['hx-request'] === 'true';
    const done = (message: string, back: string): Reply =>
      htmx
        ? { status: 200, body: flash(message, true) }
        : { status: 303, body: '', headers: { location: back } };
    const failed = (err: unknown): Reply => {
      const message = `The orchestrator refused: ${messageOf(err)}`;
      return htmx
        ? { status: 200, body: flash(message, false) }
        : { status: 502, body: messagePage('Action failed', message, this.ctx()) };
    };
    const letters = /^\/dead-letters\/(replay|discard|replay-all)$/.exec(path);
    if (letters !== null) {
      // The monitor acts with its own rights: the user must hold the role the gRPC API asks.
      if (user !== undefined && user.role !== 'operator' && user.role !== 'admin') {
        return failed(new Error('replaying or discarding dead letters needs the operator role'));
      }
      const topic = form.get('topic') ?? '';
      const id = form.get('id') ?? '';
      const { monitor } = this.options;
      // From the page (htmx): the dead-letter section comes back redrawn, the answer on top.
      const answer = async (message: string, ok = true): Promise<Reply> =>
        htmx
          ? {
              status: 200,
              body: deadLettersSection(await monitor.listDeadLetters(), this.ctx(undefined, user), {
                message,
                ok,
              }),
            }
          : done(message, '/dead-letters');
      try {
        if (letters[1] === 'replay') {
          await monitor.replayDeadLetter(topic, id);
          return await answer(`Replayed ${id}.`, true);
        }
        if (letters[1] === 'discard') {
          await monitor.discardDeadLetter(topic, id);
          return await answer(`Discarded ${id}.`, true);
        }
        if (topic === '') throw new HttpError(400, 'Replaying all needs a topic.');
        // Those listed now (the monitor lists at most its page of them); one gone meanwhile
        // (replayed by someone else) is counted, not an error.
        let replayed = 0;
        let gone = 0;
        for (const letter of await monitor.listDeadLetters(topic)) {
          try {
            await monitor.replayDeadLetter(topic, letter.id);
            replayed++;
          } catch (err) {
            if ((err as { code?: unknown }).code !== 'NOT_FOUND') throw err;
            gone++;
          }
        }
        return await answer(
          `Replayed ${replayed} dead letter${replayed === 1 ? '' : 's'} of ${topic}${gone > 0 ? ` (${gone} already gone)` : ''}.`,
          true,
        );
      } catch (err) {
        if (err instanceof HttpError) throw err;
        const message = `The event-monitor refused: ${messageOf(err)}`;
        return htmx
          ? answer(message, false)
          : { status: 502, body: messagePage('Action failed', message, this.ctx(undefined, user)) };
      }
    }
    const bulk = /^\/bulk\/(cancel|retry)$/.exec(path);
    if (bulk !== null) return this.bulk(bulk[1] as BulkAction, form, user);
    const match = /^\/runs\/([^/]+)\/(cancel|signal|retry-step|skip-step|resume-compensation)$/.exec(path);
    if (match === null) throw new HttpError(404, 'There is no such action.');
    const actions = this.actionsOf(user);
    const txId = decodeURIComponent(match[1] ?? '');
    const action = match[2];
    const step = form.get('step') ?? '';
    try {
      if (action === 'cancel') await actions.cancelWorkflow(txId, 'cancelled from the dashboard');
      else if (action === 'signal') {
        const name = form.get('name') ?? '';
        if (name === '') throw new HttpError(400, 'A signal needs a name.');
        await actions.signalWorkflow(txId, name, optionalJson(form.get('payload') ?? undefined, 'payload'));
      } else if (action === 'retry-step') await actions.retryStep(txId, step);
      else if (action === 'skip-step')
        await actions.skipStep(txId, step, optionalJson(form.get('output') ?? undefined, 'output'));
      else await actions.resumeCompensation(txId);
    } catch (err) {
      if (err instanceof HttpError) throw err;
      return failed(err);
    }
    return done(`${action} sent for ${txId}.`, `/runs/${encodeURIComponent(txId)}`);
  }

  /** The orchestrator's API acting for this user (with their token when authentication is on). */
  private actionsOf(user: User | undefined): DashboardActions {
    const auth = this.options.auth;
    const actions =
      auth === undefined
        ? this.options.actions
        : user === undefined
          ? undefined
          : auth.actionsFor?.(user.token);
    if (actions === undefined)
      throw new HttpError(503, 'No orchestrator address is configured (MULTIAGENTS_ORCHESTRATOR_ADDRESS).');
    return actions;
  }

  private get actionsEnabled(): boolean {
    return this.options.auth === undefined
      ? this.options.actions !== undefined
      : this.options.auth.actionsFor !== undefined;
  }

  /** The bulk action's confirmation: how many runs the filter selects now (nothing changes). */
  private async bulkView(url: URL): Promise<BulkView> {
    const action = url.searchParams.get('action') ?? '';
    if (!isBulkAction(action)) throw new HttpError(400, 'A bulk action is "cancel" or "retry".');
    const query = this.bulkQuery(this.parseRunsQuery(url));
    const until = this.now();
    const { runs, truncated } = await selectForBulk(this.options, action, query, until, MAX_BULK_RUNS);
    return {
      action,
      query,
      count: runs.length,
      truncated,
      limit: MAX_BULK_RUNS,
      until,
      sample: runs.slice(0, BULK_SAMPLE).map(rowOf),
    };
  }

  /** A confirmed bulk action: the same filter, runs created by `until`, at most `expected` of them. */
  private async bulk(action: BulkAction, form: URLSearchParams, user: User | undefined): Promise<Reply> {
    const actions = this.actionsOf(user);
    const url = new URL('http://dashboard/');
    for (const name of ['state', 'workflowId', 'txId', 'from', 'to']) {
      const value = form.get(name);
      if (value !== null) url.searchParams.set(name, value);
    }
    const query = this.bulkQuery(this.parseRunsQuery(url));
    const until = Number(form.get('until'));
    const expected = Number(form.get('expected'));
    if (
      !Number.isSafeInteger(until) ||
      !Number.isSafeInteger(expected) ||
      expected < 1 ||
      expected > MAX_BULK_RUNS
    )
      throw new HttpError(400, 'A bulk action needs the moment and the count it was confirmed with.');
    const { runs } = await selectForBulk(this.options, action, query, until, expected);
    const result = await runBulk(actions, action, runs);
    this.options.logger?.info({ ...result, query }, 'bulk action from the dashboard');
    return { status: 200, body: bulkDonePage({ ...result, query }, this.ctx(undefined, user)) };
  }

  /** A bulk action's filter: never the whole store by accident, never a page cursor. */
  private bulkQuery(query: RunsQuery): RunsQuery {
    const { cursor: _cursor, ...filter } = query;
    if (Object.keys(filter).length === 0)
      throw new HttpError(400, 'A bulk action needs a filter (a state, a workflow, a day range or a txId).');
    return filter;
  }

  private openStream(req: IncomingMessage, res: ServerResponse, url: URL): void {
    this.watch();
    const txId = url.searchParams.get('txId') ?? undefined;
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
    });
    res.write('retry: 2000\n\n');
    const stream = txId === undefined ? { res } : { txId, res };
    // Resume: replay what the client missed, when its last event is still in the buffer.
    const last = req.headers['last-event-id'];
    if (typeof last === 'string' && last !== '') {
      const at = this.recent.findIndex((e) => e.id === last);
      if (at >= 0) for (const envelope of this.recent.slice(at + 1)) this.write(stream, envelope);
    }
    this.streams.add(stream);
    req.on('close', () => this.streams.delete(stream));
  }

  private publish(envelope: Envelope): void {
    this.recent.push(envelope);
    if (this.recent.length > DEFAULT_EVENT_BUFFER) this.recent.shift();
    for (const stream of this.streams) this.write(stream, envelope);
  }

  private write(stream: { txId?: string; res: ServerResponse }, envelope: Envelope): void {
    if (stream.txId !== undefined && stream.txId !== envelope.txId) return;
    // Ids and types are ours, but never trust them to be free of newlines.
    const id = envelope.id.replace(/[\r\n]/g, '');
    const type = envelope.type.replace(/[\r\n]/g, '');
    stream.res.write(`id: ${id}\nevent: transition\ndata: ${type}\n\n`);
  }
}

interface User {
  readonly token: string;
  readonly role: string;
}

function cookieOf(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) {
      try {
        const value = decodeURIComponent(part.slice(at + 1).trim());
        return value === '' ? undefined : value;
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

function rowOf(run: Run): {
  txId: string;
  workflowId: string;
  state: string;
  createdAt: number;
  updatedAt: number;
} {
  return {
    txId: run.txId,
    workflowId: run.workflowId,
    state: run.state,
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'The form is too large.');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
