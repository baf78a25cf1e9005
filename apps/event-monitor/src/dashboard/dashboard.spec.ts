import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Envelope, Run, RunState } from '@multiagents/contracts';
import type { RunFilter, RunPage, StoredRun } from '@multiagents/core';
import type { StuckRunInfo } from '@multiagents/monitor';
import { Dashboard, type DashboardActions, type DashboardOptions } from './dashboard';
import { escapeHtml, html } from './html';
import { gantt } from './views';

const TOKEN = 'a'.repeat(48);
const T0 = Date.UTC(2026, 0, 1);
const EVIL = '<script>alert(1)</script>';

function run(i: number, patch: Partial<Run> = {}): Run {
  return {
    txId: `tx-${i}`,
    workflowId: i % 2 === 0 ? 'even' : 'odd',
    workflowVersion: 1,
    state: 'running',
    input: {},
    context: {},
    steps: {},
    createdAt: T0 + i * 1000,
    updatedAt: T0 + i * 1000,
    signals: {},
    completedCount: 0,
    outputCount: 0,
    ...patch,
  };
}

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** Drives Dashboard.handle with an in-memory request and response (no socket). */
function call(
  dashboard: Dashboard,
  method: string,
  url: string,
  options: { headers?: Record<string, string>; body?: string } = {},
): Promise<Reply> {
  const req = Object.assign(Readable.from(options.body === undefined ? [] : [Buffer.from(options.body)]), {
    method,
    url,
    headers: { host: 'dash.test', ...options.headers },
  }) as unknown as IncomingMessage;
  return new Promise((resolve) => {
    let status = 0;
    let headers: Record<string, string> = {};
    const res = {
      writeHead(s: number, h: Record<string, string>) {
        status = s;
        headers = h;
      },
      end(body: string) {
        resolve({ status, headers, body });
      },
    } as unknown as ServerResponse;
    dashboard.handle(req, res);
  });
}

function setup(
  runs: Run[],
  extra: Partial<DashboardOptions> = {},
): { dashboard: Dashboard; listed: RunFilter[] } {
  const listed: RunFilter[] = [];
  const sorted = [...runs].sort((a, b) => b.createdAt - a.createdAt);
  const stuck: StuckRunInfo[] = [
    {
      txId: 'tx-stuck',
      workflowId: 'odd',
      state: 'running',
      lastProgressAt: T0,
      thresholdMs: 1000,
      detectedAt: T0,
      steps: ['s'],
      version: 2,
    },
  ];
  const dashboard = new Dashboard({
    csrfToken: TOKEN,
    stuckThresholdMs: 60_000,
    pageSize: 2,
    now: () => T0 + 100_000,
    runs: {
      list(filter: RunFilter, limit: number, cursor?: string): Promise<RunPage> {
        listed.push(filter);
        const matching = sorted.filter(
          (r) =>
            (filter.state === undefined || r.state === filter.state) &&
            (filter.workflowId === undefined || r.workflowId === filter.workflowId) &&
            (filter.createdAfter === undefined || r.createdAt >= filter.createdAfter) &&
            (filter.createdBefore === undefined || r.createdAt <= filter.createdBefore),
        );
        const start = cursor === undefined ? 0 : Number(cursor);
        const page = matching.slice(start, start + limit);
        return Promise.resolve({
          runs: page,
          ...(start + limit < matching.length ? { nextCursor: String(start + limit) } : {}),
        });
      },
      get(txId: string): Promise<StoredRun | undefined> {
        const found = runs.find((r) => r.txId === txId);
        return Promise.resolve(found === undefined ? undefined : { run: found, version: 1, revision: '1' });
      },
      countByState() {
        const counts: Partial<Record<RunState, number>> = {};
        for (const r of runs) counts[r.state] = (counts[r.state] ?? 0) + 1;
        return Promise.resolve(counts);
      },
    },
    monitor: {
      getTimeline: (txId: string) =>
        Promise.resolve({
          txId,
          workflowId: 'odd',
          entries: [
            {
              version: 1,
              state: 'running',
              time: T0,
              events: [{ type: 'workflow.started', state: 'running' }],
            },
            {
              version: 2,
              state: 'running',
              time: T0 + 10,
              events: [{ type: 'step.failed', state: 'running', step: 'pay', attempt: 1, error: EVIL }],
            },
          ],
        }),
      listStuckRuns: () => Promise.resolve(stuck),
      listRetryingRuns: (filter: { readonly workflowId?: string } = {}) =>
        Promise.resolve(
          [
            { txId: 'tx-retry', workflowId: 'odd', state: 'running' as const, steps: ['pay'], updatedAt: T0 },
          ].filter((r) => filter.workflowId === undefined || r.workflowId === filter.workflowId),
        ),
      listDeadLetters: () => Promise.resolve([]),
      replayDeadLetter: () => Promise.resolve(),
      discardDeadLetter: () => Promise.resolve(),
      listWorkers: () => Promise.resolve([]),
      watchEvents: (_filter: unknown, _listener: (e: Envelope) => void) => Promise.resolve(() => undefined),
    },
    ...extra,
  });
  return { dashboard, listed };
}

function actionsSpy(): DashboardActions & { calls: unknown[][] } {
  const calls: unknown[][] = [];
  const record =
    (name: string) =>
    (...args: unknown[]): Promise<Run> => {
      calls.push([name, ...args]);
      return Promise.resolve(run(1));
    };
  return {
    calls,
    cancelWorkflow: record('cancel'),
    signalWorkflow: record('signal'),
    retryStep: record('retry'),
    skipStep: record('skip'),
    resumeCompensation: record('resume'),
  };
}

describe('html', () => {
  it('escapes every interpolated value and keeps nested templates', () => {
    expect(escapeHtml(`<a href="x" onclick='y'>&</a>`)).toBe(
      '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;',
    );
    expect(html`<p>${EVIL}${html`<b>${'&'}</b>`}${[1, '<']}${undefined}</p>`.value).toBe(
      '<p>&lt;script&gt;alert(1)&lt;/script&gt;<b>&amp;</b>1&lt;</p>',
    );
  });
});

describe('Dashboard runs page', () => {
  const runs = [1, 2, 3, 4, 5].map((i) => run(i, i === 3 ? { state: 'failed' } : {}));

  it('lists the newest runs first, pages with the store cursor and shows counts per state', async () => {
    const { dashboard } = setup(runs);
    const first = await call(dashboard, 'GET', '/');
    expect(first.status).toBe(200);
    expect(first.headers['content-security-policy']).toContain("script-src 'self'");
    const order = [...first.body.matchAll(/href="\/runs\/(tx-\d)"/g)].map((m) => m[1]);
    expect(order).toEqual(['tx-5', 'tx-4']);
    expect(first.body).toContain('href="/?cursor=2"');
    expect(first.body).toMatch(/running<\/a> <b>4<\/b>/);
    expect(first.body).toMatch(/failed<\/a> <b>1<\/b>/);
    expect(first.body).toMatch(/stuck<\/a> <b>1<\/b>/);
    expect(first.body).toMatch(/retrying<\/a> <b>1<\/b>/);
    const second = await call(dashboard, 'GET', '/runs/table?cursor=2');
    expect([...second.body.matchAll(/href="\/runs\/(tx-\d)"/g)].map((m) => m[1])).toEqual(['tx-3', 'tx-2']);
    const last = await call(dashboard, 'GET', '/runs/table?cursor=4');
    expect(last.body).toContain('tx-1');
    expect(last.body).not.toContain('Next page');
  });

  it('filters by state and workflow, lists stuck runs from the watchdog and finds a txId', async () => {
    const { dashboard, listed } = setup(runs);
    const failed = await call(dashboard, 'GET', '/runs/table?state=failed&workflowId=odd');
    expect(listed.at(-1)).toEqual({ state: 'failed', workflowId: 'odd' });
    expect(failed.body).toContain('tx-3');
    expect(failed.body).not.toContain('tx-5');
    const stuck = await call(dashboard, 'GET', '/?state=stuck');
    expect(stuck.body).toContain('href="/runs/tx-stuck"');
    // The derived `retrying`: live runs waiting for a retry's backoff, from the watchdog's scan.
    const retrying = await call(dashboard, 'GET', '/runs/table?state=retrying');
    expect([...retrying.body.matchAll(/href="\/runs\/(tx-[a-z0-9-]+)"/g)].map((m) => m[1])).toEqual([
      'tx-retry',
    ]);
    const retryingElsewhere = await call(dashboard, 'GET', '/runs/table?state=retrying&workflowId=even');
    expect(retryingElsewhere.body).toContain('No runs match.');
    const found = await call(dashboard, 'GET', '/runs/table?txId=tx-4');
    expect([...found.body.matchAll(/href="\/runs\/(tx-\d)"/g)].map((m) => m[1])).toEqual(['tx-4']);
    const none = await call(dashboard, 'GET', '/runs/table?txId=nope');
    expect(none.body).toContain('No runs match.');
    const bad = await call(dashboard, 'GET', `/?state=${encodeURIComponent(EVIL)}`);
    expect(bad.status).toBe(400);
    expect(bad.body).not.toContain('<script>alert');
  });

  it('serves htmx, its SSE extension and its own assets from the process, never a CDN', async () => {
    const { dashboard } = setup(runs);
    for (const asset of ['htmx.min.js', 'sse.min.js', 'dashboard.js', 'dashboard.css']) {
      const reply = await call(dashboard, 'GET', `/assets/${asset}`);
      expect([asset, reply.status, reply.body.length > 100]).toEqual([asset, 200, true]);
    }
    const page = await call(dashboard, 'GET', '/');
    expect(page.body).not.toMatch(/src="https?:/);
    expect(page.body).not.toMatch(/href="https?:/);
  });

  it('filters by the day a run started (UTC), and refuses what is not a day', async () => {
    const { dashboard, listed } = setup([run(1), run(2, { createdAt: T0 + 86_400_000 })]);
    const second = await call(dashboard, 'GET', '/runs/table?from=2026-01-02');
    expect(listed.at(-1)).toEqual({ createdAfter: T0 + 86_400_000 });
    expect([...second.body.matchAll(/href="\/runs\/(tx-\d)"/g)].map((m) => m[1])).toEqual(['tx-2']);
    const first = await call(dashboard, 'GET', '/runs/table?to=2026-01-01');
    expect(listed.at(-1)).toEqual({ createdBefore: T0 + 86_400_000 - 1 });
    expect([...first.body.matchAll(/href="\/runs\/(tx-\d)"/g)].map((m) => m[1])).toEqual(['tx-1']);
    expect((await call(dashboard, 'GET', '/?from=yesterday')).status).toBe(400);
  });

  it('escapes what the filters echo back', async () => {
    const { dashboard } = setup(runs);
    const page = await call(dashboard, 'GET', `/?workflowId=${encodeURIComponent(`"><script>x</script>`)}`);
    expect(page.body).toContain('value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"');
    expect(page.body).not.toContain('<script>x');
  });
});

describe('Dashboard run page', () => {
  const evilRun = run(7, {
    txId: 'tx-7',
    state: 'failed',
    input: { note: EVIL },
    traceHeaders: { traceparent: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01' },
    error: { code: 'E', message: EVIL, retryable: false },
    steps: {
      reserve: {
        name: 'reserve',
        status: 'compensated',
        attempt: 1,
        attempts: [{ attempt: 1, startedAt: T0, endedAt: T0 + 100, outcome: 'completed' }],
        startedAt: T0,
        compensation: {
          status: 'completed',
          attempt: 1,
          attempts: [{ attempt: 1, startedAt: T0 + 400, endedAt: T0 + 450, outcome: 'completed' }],
          startedAt: T0 + 400,
        },
      },
      pay: {
        name: 'pay',
        status: 'failed',
        attempt: 2,
        attempts: [
          { attempt: 1, startedAt: T0 + 100, endedAt: T0 + 200, outcome: 'failed' },
          { attempt: 2, startedAt: T0 + 300, endedAt: T0 + 350, outcome: 'failed' },
        ],
        startedAt: T0 + 100,
        error: { code: 'E', message: EVIL, retryable: false },
      },
    },
  });

  it('renders the timeline, events, JSON, Jaeger link and the actions of a failed run, all escaped', async () => {
    const { dashboard } = setup([evilRun], { actions: actionsSpy(), jaegerUrl: 'http://jaeger:16686' });
    const page = await call(dashboard, 'GET', '/runs/tx-7');
    expect(page.status).toBe(200);
    expect(page.body).not.toContain('<script>alert');
    expect(page.body).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page.body).toContain('href="http://jaeger:16686/trace/0123456789abcdef0123456789abcdef"');
    expect(page.body).toContain('action="/runs/tx-7/retry-step"');
    expect(page.body).toContain('action="/runs/tx-7/skip-step"');
    expect(page.body).not.toContain('/cancel"');
    expect(page.body).toContain(`name="_csrf" value="${TOKEN}"`);
    expect(page.body).toContain('sse-connect="/events?txId=tx-7"');
    const failures = await call(dashboard, 'GET', '/runs/tx-7/live?failures=1');
    expect(failures.body).toContain('step.failed');
    expect(failures.body).not.toContain('workflow.started');
  });

  it('draws attempts on one axis and each compensation after the forward steps', () => {
    const svg = gantt(evilRun, T0 + 1000).value;
    const steps = [...svg.matchAll(/data-kind="(\w+)"\s+data-step="([^"]+)"/g)].map((m) => `${m[1]}:${m[2]}`);
    expect(steps).toEqual(['attempt:reserve', 'attempt:pay', 'attempt:pay', 'compensation:undo reserve']);
    expect(svg).toContain('left:0.00%;width:22.22%');
    expect(svg).toContain('left:88.89%');
  });

  it('answers a not-found page for an unknown txId, escaped, without a stack trace', async () => {
    const { dashboard } = setup([]);
    const page = await call(dashboard, 'GET', `/runs/${encodeURIComponent(EVIL)}`);
    expect(page.status).toBe(404);
    expect(page.body).toContain('No run has the txId');
    expect(page.body).not.toContain('<script>alert');
    expect(page.body).not.toMatch(/at .*\.ts:\d+/);
  });
});

describe('Dashboard actions', () => {
  const live = run(8, { txId: 'tx-8' });
  const form = (fields: Record<string, string>): string => new URLSearchParams(fields).toString();
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };

  it('cancels and signals through the orchestrator with the CSRF token from the same origin', async () => {
    const actions = actionsSpy();
    const { dashboard } = setup([live], { actions });
    const cancel = await call(dashboard, 'POST', '/runs/tx-8/cancel', {
      headers: { ...headers, origin: 'http://dash.test', 'hx-request': 'true' },
      body: form({ _csrf: TOKEN }),
    });
    expect(cancel.status).toBe(200);
    expect(cancel.body).toContain('cancel sent for tx-8');
    const signal = await call(dashboard, 'POST', '/runs/tx-8/signal', {
      headers,
      body: form({ _csrf: TOKEN, name: 'approve', payload: '{"ok":true}' }),
    });
    expect(signal.status).toBe(303);
    expect(signal.headers['location']).toBe('/runs/tx-8');
    expect(actions.calls).toEqual([
      ['cancel', 'tx-8', 'cancelled from the dashboard'],
      ['signal', 'tx-8', 'approve', { ok: true }],
    ]);
  });

  it('refuses a missing or wrong token, another origin, a GET and a non-form body', async () => {
    const actions = actionsSpy();
    const { dashboard } = setup([live], { actions });
    const attempts = await Promise.all([
      call(dashboard, 'POST', '/runs/tx-8/cancel', { headers, body: '' }),
      call(dashboard, 'POST', '/runs/tx-8/cancel', { headers, body: form({ _csrf: 'b'.repeat(48) }) }),
      call(dashboard, 'POST', '/runs/tx-8/cancel', {
        headers: { ...headers, origin: 'http://evil.test' },
        body: form({ _csrf: TOKEN }),
      }),
      call(dashboard, 'POST', '/runs/tx-8/cancel', {
        headers: { ...headers, 'sec-fetch-site': 'cross-site' },
        body: form({ _csrf: TOKEN }),
      }),
      call(dashboard, 'GET', '/runs/tx-8/cancel'),
      call(dashboard, 'POST', '/runs/tx-8/cancel', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ _csrf: TOKEN }),
      }),
    ]);
    expect(attempts.map((a) => a.status)).toEqual([403, 403, 403, 403, 404, 415]);
    expect(actions.calls).toEqual([]);
  });

  describe('bulk actions', () => {
    // now() is T0 + 100 s: tx-1..tx-4 were created before it, tx-200 after it.
    const failedStep = { name: 'pay', status: 'failed' as const, attempt: 1, attempts: [] };
    const runs = [
      run(1, { state: 'running' }),
      run(2, { state: 'waiting' }),
      run(3, { state: 'failed', steps: { pay: failedStep } }),
      run(4, { state: 'completed' }),
      run(5, { state: 'compensation_failed', workflowId: 'odd' }),
      run(7, { state: 'running' }),
      run(200, { state: 'running' }),
    ];
    // The text of a page, whitespace collapsed (the templates wrap long sentences).
    const flat = (body: string): string => body.replace(/\s+/g, ' ');
    const confirm = (url: string): Promise<Reply> =>
      call(setup(runs, { actions: actionsSpy() }).dashboard, 'GET', url);

    it('offers bulk actions for a filter, and asks how many before doing anything', async () => {
      const actions = actionsSpy();
      const { dashboard } = setup(runs, { actions });
      const page = await call(dashboard, 'GET', '/?workflowId=odd');
      expect(page.body).toContain('href="/bulk?action=cancel&amp;workflowId=odd"');
      expect(page.body).toContain('href="/bulk?action=retry&amp;workflowId=odd"');
      expect((await call(dashboard, 'GET', '/')).body).toContain('Filter the runs to cancel or retry');
      // Odd runs still going, created by now: tx-1 and tx-7 (tx-3 failed, tx-5 is terminal, tx-200 too new).
      const cancel = await call(dashboard, 'GET', '/bulk?action=cancel&workflowId=odd');
      expect(cancel.status).toBe(200);
      expect(flat(cancel.body)).toContain('Cancel 2 runs?');
      expect(cancel.body).toContain('name="expected" value="2"');
      expect(cancel.body).toContain(`name="until" value="${T0 + 100_000}"`);
      expect(cancel.body).toContain('action="/bulk/cancel"');
      const retry = await call(dashboard, 'GET', '/bulk?action=retry&workflowId=odd');
      expect(flat(retry.body)).toContain('Retry 2 runs?'); // tx-3 (failed) and tx-5 (compensation_failed)
      expect(actions.calls).toEqual([]);
    });

    it('cancels the runs created by the confirmation, at most as many as confirmed, and reports each outcome', async () => {
      const actions = actionsSpy();
      const ended = new Error('run is completed');
      Object.assign(ended, { code: 'FAILED_PRECONDITION' });
      const { dashboard } = setup(runs, {
        actions: {
          ...actions,
          cancelWorkflow: (txId: string, reason?: string) =>
            txId === 'tx-2' ? Promise.reject(ended) : actions.cancelWorkflow(txId, reason),
        },
      });
      const done = await call(dashboard, 'POST', '/bulk/cancel', {
        headers,
        body: form({ _csrf: TOKEN, state: 'running', until: String(T0 + 100_000), expected: '5' }),
      });
      expect(done.status).toBe(200);
      // tx-200 started after the confirmation: never touched.
      expect(actions.calls.map((c) => c[1]).sort()).toEqual(['tx-1', 'tx-7']);
      expect(flat(done.body)).toContain('Cancelled 2 runs; 0 skipped');
      const capped = actionsSpy();
      const one = await call(setup(runs, { actions: capped }).dashboard, 'POST', '/bulk/cancel', {
        headers,
        body: form({ _csrf: TOKEN, workflowId: 'odd', until: String(T0 + 100_000), expected: '1' }),
      });
      expect(flat(one.body)).toContain('Cancelled 1 run;');
      expect(capped.calls).toEqual([['cancel', 'tx-7', 'cancelled in bulk from the dashboard']]);
      // A run that ended between the confirmation and its turn is skipped, not an error.
      const mixed = await call(dashboard, 'POST', '/bulk/cancel', {
        headers,
        body: form({ _csrf: TOKEN, workflowId: 'even', until: String(T0 + 100_000), expected: '9' }),
      });
      expect(flat(mixed.body)).toContain('Cancelled 0 runs; 1 skipped');
    });

    it('retries the failed steps of failed runs and resumes failed compensations', async () => {
      const actions = actionsSpy();
      const { dashboard } = setup(runs, { actions });
      const done = await call(dashboard, 'POST', '/bulk/retry', {
        headers,
        body: form({ _csrf: TOKEN, workflowId: 'odd', until: String(T0 + 100_000), expected: '2' }),
      });
      expect(flat(done.body)).toContain('Retried 2 runs; 0 skipped (they no longer allowed it); 0 refused.');
      expect(actions.calls).toEqual(
        expect.arrayContaining([
          ['retry', 'tx-3', 'pay'],
          ['resume', 'tx-5'],
        ]),
      );
      expect(actions.calls).toHaveLength(2);
    });

    it('refuses a bulk action without a filter, with an unknown action, a bad count or no CSRF token', async () => {
      const actions = actionsSpy();
      const { dashboard } = setup(runs, { actions });
      const until = String(T0 + 100_000);
      const replies = await Promise.all([
        confirm('/bulk?action=cancel'),
        confirm('/bulk?action=delete&state=running'),
        confirm('/bulk?action=cancel&state=nope'),
        call(dashboard, 'POST', '/bulk/cancel', {
          headers,
          body: form({ _csrf: TOKEN, until, expected: '2' }),
        }),
        call(dashboard, 'POST', '/bulk/cancel', {
          headers,
          body: form({ _csrf: TOKEN, state: 'running', until, expected: '0' }),
        }),
        call(dashboard, 'POST', '/bulk/cancel', {
          headers,
          body: form({ _csrf: TOKEN, state: 'running', until: 'soon', expected: '2' }),
        }),
        call(dashboard, 'POST', '/bulk/cancel', {
          headers,
          body: form({ state: 'running', until, expected: '2' }),
        }),
        call(dashboard, 'POST', '/bulk/delete', {
          headers,
          body: form({ _csrf: TOKEN, state: 'running', until, expected: '2' }),
        }),
      ]);
      expect(replies.map((r) => r.status)).toEqual([400, 400, 400, 400, 400, 400, 403, 404]);
      expect(replies[0]?.body).toContain('A bulk action needs a filter');
      expect(actions.calls).toEqual([]);
      // Nothing selected: the confirmation says so and offers no button.
      const none = await confirm('/bulk?action=retry&state=running');
      expect(flat(none.body)).toContain('can be retried now');
      expect(none.body).not.toContain('action="/bulk/retry"');
    });

    it('escapes what a bulk page echoes back', async () => {
      const page = await confirm(`/bulk?action=cancel&workflowId=${encodeURIComponent(EVIL)}`);
      expect(page.status).toBe(200);
      expect(page.body).not.toContain(EVIL);
      expect(page.body).toContain(escapeHtml(EVIL));
    });
  });

  it('shows an orchestrator refusal as a message, escaped', async () => {
    const actions = actionsSpy();
    const { dashboard } = setup([live], {
      actions: { ...actions, cancelWorkflow: () => Promise.reject(new Error(EVIL)) },
    });
    const reply = await call(dashboard, 'POST', '/runs/tx-8/cancel', {
      headers: { ...headers, 'hx-request': 'true' },
      body: form({ _csrf: TOKEN }),
    });
    expect(reply.body).toContain('The orchestrator refused: &lt;script&gt;');
  });
});

describe('Dashboard with authentication on', () => {
  const live = run(9, { txId: 'tx-9' });
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  const principals: Record<string, { subject: string; role: string; workflows?: ReadonlySet<string> }> = {
    'good-token': { subject: 'ops', role: 'operator' },
    'reader-token': { subject: 'viewer', role: 'reader' },
    'limited-token': { subject: 'team', role: 'admin', workflows: new Set(['odd']) },
  };

  function authed(): { dashboard: Dashboard; tokens: string[]; actions: ReturnType<typeof actionsSpy> } {
    const tokens: string[] = [];
    const actions = actionsSpy();
    const { dashboard } = setup([live], {
      actions: actionsSpy(), // the monitor's own client is never used once users log in
      auth: {
        authenticate: (token) => {
          const principal = principals[token];
          return principal === undefined
            ? Promise.reject(new Error('bad token'))
            : Promise.resolve(principal);
        },
        actionsFor: (token) => {
          tokens.push(token);
          return actions;
        },
      },
    });
    return { dashboard, tokens, actions };
  }

  it('sends browsers without a valid token to the login page and refuses their posts', async () => {
    const { dashboard, actions } = authed();
    const page = await call(dashboard, 'GET', '/');
    expect([page.status, page.headers['location']]).toEqual([303, '/login']);
    expect((await call(dashboard, 'GET', '/login')).body).toContain('type="password" name="token"');
    expect((await call(dashboard, 'GET', '/assets/dashboard.css')).status).toBe(200);
    const limited = await call(dashboard, 'GET', '/', {
      headers: { cookie: 'multiagents_token=limited-token' },
    });
    expect(limited.status).toBe(303);
    const post = await call(dashboard, 'POST', '/runs/tx-9/cancel', {
      headers: { ...headers, cookie: 'multiagents_token=forged' },
      body: new URLSearchParams({ _csrf: TOKEN }).toString(),
    });
    expect(post.status).toBe(401);
    expect(actions.calls).toEqual([]);
  });

  it('logs in with a token into an HttpOnly cookie and acts with that token', async () => {
    const { dashboard, tokens, actions } = authed();
    const refused = await call(dashboard, 'POST', '/login', {
      headers,
      body: new URLSearchParams({ _csrf: TOKEN, token: 'nope' }).toString(),
    });
    expect(refused.status).toBe(401);
    const login = await call(dashboard, 'POST', '/login', {
      headers,
      body: new URLSearchParams({ _csrf: TOKEN, token: 'good-token' }).toString(),
    });
    expect(login.status).toBe(303);
    expect(login.headers['set-cookie']).toBe(
      'multiagents_token=good-token; HttpOnly; SameSite=Strict; Path=/',
    );
    const cookie = 'multiagents_token=good-token';
    const runPage = (await call(dashboard, 'GET', '/runs/tx-9', { headers: { cookie } })).body;
    expect(runPage).toContain('Cancel run');
    expect(runPage).toContain('action="/logout"');
    const logout = await call(dashboard, 'POST', '/logout', {
      headers: { ...headers, cookie },
      body: new URLSearchParams({ _csrf: TOKEN }).toString(),
    });
    expect(logout.headers['set-cookie']).toContain('Max-Age=0');
    await call(dashboard, 'POST', '/runs/tx-9/cancel', {
      headers: { ...headers, cookie },
      body: new URLSearchParams({ _csrf: TOKEN }).toString(),
    });
    expect(tokens).toEqual(['good-token']);
    expect(actions.calls).toEqual([['cancel', 'tx-9', 'cancelled from the dashboard']]);
    const replay = await call(dashboard, 'POST', '/dead-letters/replay', {
      headers: { ...headers, cookie: 'multiagents_token=reader-token', 'hx-request': 'true' },
      body: new URLSearchParams({ _csrf: TOKEN, topic: 'events', id: '1' }).toString(),
    });
    expect(replay.body).toContain('needs the operator role');
  });
});

describe('Dashboard other pages and the event stream', () => {
  it('renders dead letters (escaped payload, replay form), workers and stuck runs', async () => {
    const replayed: string[] = [];
    const { dashboard } = setup([], {});
    const withLetters = new Dashboard({
      csrfToken: TOKEN,
      stuckThresholdMs: 60_000,
      now: () => T0 + 5_000,
      runs: {
        list: () => Promise.resolve({ runs: [] }),
        get: () => Promise.resolve(undefined),
        countByState: () => Promise.resolve({}),
      },
      monitor: {
        getTimeline: () => Promise.reject(new Error('none')),
        listStuckRuns: () => Promise.resolve([]),
        listRetryingRuns: () => Promise.resolve([]),
        listDeadLetters: () =>
          Promise.resolve([
            {
              id: '1-0',
              topic: 'events',
              group: 'event-monitor',
              data: Buffer.from(EVIL),
              error: `bad_transition: ${EVIL}`,
              deliveryCount: 3,
              deadAt: T0,
            },
          ]),
        replayDeadLetter: (topic: string, id: string) => {
          replayed.push(`${topic}/${id}`);
          return Promise.resolve();
        },
        discardDeadLetter: () => Promise.resolve(),
        listWorkers: () =>
          Promise.resolve([
            {
              managerId: 'wm-1',
              workers: ['billing.charge'],
              capacity: 8,
              inFlight: 2,
              seenAt: T0,
              live: true,
            },
            { managerId: EVIL, workers: [], capacity: 1, inFlight: 0, seenAt: T0 - 60_000, live: false },
          ]),
        watchEvents: () => Promise.resolve(() => undefined),
      },
    });
    const letters = await call(withLetters, 'GET', '/dead-letters');
    expect(letters.body).not.toContain('<script>alert');
    expect(letters.body).toContain('bad_transition: &lt;script&gt;');
    expect(letters.body).toContain('action="/dead-letters/replay"');
    const replay = await call(withLetters, 'POST', '/dead-letters/replay', {
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'hx-request': 'true' },
      body: new URLSearchParams({ _csrf: TOKEN, topic: 'events', id: '1-0' }).toString(),
    });
    expect(replay.body).toContain('Replayed 1-0.');
    expect(replayed).toEqual(['events/1-0']);
    const workers = await call(withLetters, 'GET', '/workers');
    expect(workers.body).toMatch(/wm-1<\/td>\s*<td>live<\/td>/);
    expect(workers.body).toContain('2 / 8');
    expect(workers.body).not.toContain('<script>alert');
    const stuck = await call(dashboard, 'GET', '/stuck');
    expect(stuck.body).toContain('Default threshold: 1 min 0 s.');
    expect(stuck.body).toContain('href="/runs/tx-stuck"');
  });

  it('discards a dead letter and replays all of a topic, redrawing the list in place', async () => {
    const letter = (id: string, topic = 'events') => ({
      id,
      topic,
      group: 'event-monitor',
      data: Buffer.from('{}'),
      error: 'bad_transition',
      deliveryCount: 1,
      deadAt: T0,
    });
    let letters = [letter('1-0'), letter('2-0'), letter('3-0', 'results')];
    const notFound = Object.assign(new Error('no such dead letter'), { code: 'NOT_FOUND' });
    const remove = (topic: string, id: string): Promise<void> => {
      const before = letters.length;
      letters = letters.filter((l) => !(l.topic === topic && l.id === id));
      return letters.length < before ? Promise.resolve() : Promise.reject(notFound);
    };
    const { dashboard } = setup([], {});
    const monitor = (dashboard as unknown as { options: DashboardOptions }).options.monitor;
    const withLetters = new Dashboard({
      ...(dashboard as unknown as { options: DashboardOptions }).options,
      monitor: {
        ...monitor,
        listDeadLetters: (topic?: string) =>
          Promise.resolve(letters.filter((l) => !topic || l.topic === topic)),
        // 2-0 is replayed by someone else while the replay-all runs: counted as gone.
        replayDeadLetter: (topic: string, id: string) =>
          id === '2-0' ? Promise.reject(notFound) : remove(topic, id),
        discardDeadLetter: remove,
      },
    });
    const page = await call(withLetters, 'GET', '/dead-letters');
    expect(page.body).toContain('Replay all 2 of events');
    expect(page.body).toContain('hx-confirm="Discard 1-0 for good? It cannot be replayed afterwards."');
    const post = (path: string, fields: Record<string, string>, extra: Record<string, string> = {}) =>
      call(withLetters, 'POST', path, {
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...extra },
        body: new URLSearchParams({ _csrf: TOKEN, ...fields }).toString(),
      });
    const discarded = await post(
      '/dead-letters/discard',
      { topic: 'results', id: '3-0' },
      { 'hx-request': 'true' },
    );
    expect(discarded.body).toContain('Discarded 3-0.');
    expect(discarded.body).toContain('<div id="letters">');
    expect(discarded.body).not.toContain('3-0</td>');
    const again = await post(
      '/dead-letters/discard',
      { topic: 'results', id: '3-0' },
      { 'hx-request': 'true' },
    );
    expect(again.body).toContain('The event-monitor refused: no such dead letter');
    const all = await post('/dead-letters/replay-all', { topic: 'events' }, { 'hx-request': 'true' });
    expect(all.body).toContain('Replayed 1 dead letter of events (1 already gone).');
    expect(letters.map((l) => l.id)).toEqual(['2-0']);
    // Without htmx: a redirect back to the page; without a topic: refused.
    expect((await post('/dead-letters/discard', { topic: 'events', id: '2-0' })).status).toBe(303);
    expect((await post('/dead-letters/replay-all', {})).status).toBe(400);
  });

  it('streams events over SSE, by run, and resumes after Last-Event-ID', async () => {
    let listener: (e: Envelope) => void = () => undefined;
    const { dashboard } = setup([], {});
    const streaming = new Dashboard({
      csrfToken: TOKEN,
      stuckThresholdMs: 60_000,
      runs: {
        list: () => Promise.resolve({ runs: [] }),
        get: () => Promise.resolve(undefined),
        countByState: () => Promise.resolve({}),
      },
      monitor: {
        getTimeline: () => Promise.reject(new Error('none')),
        listStuckRuns: () => Promise.resolve([]),
        listRetryingRuns: () => Promise.resolve([]),
        listDeadLetters: () => Promise.resolve([]),
        replayDeadLetter: () => Promise.resolve(),
        discardDeadLetter: () => Promise.resolve(),
        listWorkers: () => Promise.resolve([]),
        watchEvents: (_filter: unknown, l: (e: Envelope) => void) => {
          listener = l;
          return Promise.resolve(() => undefined);
        },
      },
    });
    streaming.start();
    const event = (id: string, txId: string): Envelope => ({
      id,
      type: 'workflow.transitioned',
      txId,
      workflowId: 'w',
      time: T0,
      headers: {},
      payload: {},
    });
    const open = (url: string, lastEventId?: string): { chunks: string[]; close: () => void } => {
      const chunks: string[] = [];
      const req = Object.assign(Readable.from([]), {
        method: 'GET',
        url,
        headers: lastEventId === undefined ? {} : { 'last-event-id': lastEventId },
      }) as unknown as IncomingMessage;
      const res = {
        writeHead: () => undefined,
        write: (chunk: string) => chunks.push(chunk),
        end: () => undefined,
      } as unknown as ServerResponse;
      streaming.handle(req, res);
      return { chunks, close: () => req.emit('close') };
    };
    // The feed is followed from the first stream on.
    const all = open('/events');
    await waitUntil(() => all.chunks.length > 0);
    listener(event('e1', 'a'));
    listener(event('e2', 'b'));
    listener(event('e3', 'a'));
    const resumed = open('/events?txId=a', 'e1');
    await waitUntil(() => resumed.chunks.some((c) => c.includes('id: e3')));
    listener(event('e4', 'b'));
    expect(resumed.chunks.filter((c) => c.startsWith('id:'))).toEqual([
      'id: e3\nevent: transition\ndata: workflow.transitioned\n\n',
    ]);
    expect(all.chunks.filter((c) => c.startsWith('id:')).map((c) => c.split('\n')[0])).toEqual([
      'id: e1',
      'id: e2',
      'id: e3',
      'id: e4',
    ]);
    expect(streaming.openStreams).toBe(2);
    resumed.close();
    expect(streaming.openStreams).toBe(1);
    streaming.close();
    dashboard.close();
  });
});

/** Resolves once `check` holds (handle() answers after a microtask or two). */
async function waitUntil(check: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !check(); i++) await new Promise<void>((resolve) => setImmediate(resolve));
  if (!check()) throw new Error('condition never held');
}
