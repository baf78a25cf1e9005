/**
 * The dashboard in a real browser (Debian's chromium, headless, driven by playwright-core)
 * against real processes: an orchestrator, a worker-manager with the order-processing workers and
 * an event-monitor (with MULTIAGENTS_ORCHESTRATOR_ADDRESS), over a private redis-server. Checks the
 * runs table, a compensated order's timeline (its compensation bars after the forward steps, the
 * refund before the release), a run started after the page opened appearing without a reload,
 * a signal sent from the run page's form moving the run to `completed` on the open page, a
 * cancel from the page ending in `cancelled`, shown without a reload, retry-step on a failed run
 * ending in `completed`, a poisoned event replayed from the dead-letter page, a bulk cancel
 * confirmed with the keyboard, and the runs page at a phone's width.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBackend, type Backend } from '@multiagents/backends';
import { connect, type MultiAgentsClient } from '@multiagents/client';
import { EventType, RunState, Topics, type Envelope, type WorkflowDefinition } from '@multiagents/contracts';
import { parseDefinition } from '@multiagents/core';
import {
  freePort,
  ServiceProcess,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

const REPO_ROOT = join(__dirname, '..', '..', '..');
const WORKFLOW_FILE = join(REPO_ROOT, 'examples/order-processing/src/workflow.yaml');
const CHROMIUM = '/usr/bin/chromium';
const WAIT_MS = 60_000;

const APPROVAL_FLOW: WorkflowDefinition = {
  id: 'approval_flow',
  version: 1,
  steps: [{ name: 'approve', kind: 'wait', signal: 'approved', timeoutMs: 600_000, output: 'approval' }],
};

/** A step whose first attempt fails for good: the run ends `failed`, and a retry-step completes it. */
const RETRY_FLOW: WorkflowDefinition = {
  id: 'retry_flow',
  version: 1,
  steps: [{ name: 'flaky', kind: 'task', worker: 'test.fails_first', retry: { maxAttempts: 1 } }],
};

/** Waits that outlive the test: the bulk action's runs, one workflow of their own. */
const BULK_FLOW: WorkflowDefinition = { ...APPROVAL_FLOW, id: 'bulk_flow' };

/** The worker behind RETRY_FLOW, as a module the worker-manager loads (compiled SDK from dist). */
function failsFirstModule(): string {
  const sdk = join(REPO_ROOT, 'libs/worker-sdk/dist/index.js');
  return `const { defineWorker } = require(${JSON.stringify(sdk)});
exports.workers = [
  defineWorker('test.fails_first', (_input, ctx) => {
    if (ctx.attempt === 1) throw new Error('the first attempt always fails');
    return { attempt: ctx.attempt };
  }),
];
`;
}

// In CI the browser is installed by .ci/run: a missing one there is a failure, not a skip.
const browserMissing = !existsSync(CHROMIUM) && process.env['CI'] === undefined;
if (browserMissing) {
  // eslint-disable-next-line no-console -- the one place a developer learns why nothing ran
  console.warn(`dashboard browser test skipped: ${CHROMIUM} is absent (apt-get install -y chromium)`);
}
interface DashboardStats {
  readonly dashboardStreams: number;
  readonly dashboardFollowing: number;
}

async function stats(base: string): Promise<DashboardStats> {
  const res = await fetch(`${base}/stats`);
  return (await res.json()) as DashboardStats;
}

const describeBrowser = browserMissing ? describe.skip : describe;

// Real processes and a real browser on a shared, loaded machine: waits are bounded by WAIT_MS.
jest.setTimeout(120_000);

describeBrowser('dashboard in a real browser (orchestrator, worker-manager, event-monitor, redis)', () => {
  let broker: ServerProcess;
  let services: ServiceProcess[] = [];
  let orchestrator: MultiAgentsClient;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let modules: string;
  let base: string;
  let monitor: ServiceProcess;
  let adapters: Backend;

  beforeAll(async () => {
    execFileSync(
      'bash',
      [
        'scripts/build-quiet.sh',
        '@multiagents/orchestrator',
        '@multiagents/worker-manager',
        '@multiagents/event-monitor',
        '@multiagents/example-order-processing',
      ],
      { cwd: REPO_ROOT, stdio: 'inherit', timeout: 600_000 },
    );
    broker = await startRedisServer();
    const prefix = `dash-${process.pid}`;
    const env = {
      MULTIAGENTS_BACKEND: 'redis',
      REDIS_URL: broker.url,
      MULTIAGENTS_PREFIX: prefix,
      LOG_LEVEL: 'warn',
    };
    const logDir = join(REPO_ROOT, 'tmp', 'dashboard-browser', prefix);
    const orchestratorPort = await freePort();
    modules = mkdtempSync(join(tmpdir(), 'dashboard-workers-'));
    const failsFirst = join(modules, 'fails-first.cjs');
    writeFileSync(failsFirst, failsFirstModule());
    monitor = new ServiceProcess(
      'event-monitor',
      join(REPO_ROOT, 'apps/event-monitor/dist/main.js'),
      {
        ...env,
        GRPC_PORT: String(await freePort()),
        MULTIAGENTS_ORCHESTRATOR_ADDRESS: `127.0.0.1:${orchestratorPort}`,
        MULTIAGENTS_JAEGER_URL: 'http://jaeger.test:16686',
      },
      logDir,
      await freePort(),
    );
    services = [
      new ServiceProcess(
        'orchestrator',
        join(REPO_ROOT, 'apps/orchestrator/dist/main.js'),
        { ...env, MULTIAGENTS_DEFINITIONS: WORKFLOW_FILE, GRPC_PORT: String(orchestratorPort) },
        logDir,
        await freePort(),
      ),
      new ServiceProcess(
        'worker-manager',
        join(REPO_ROOT, 'apps/worker-manager/dist/main.js'),
        {
          ...env,
          MULTIAGENTS_WORKER_MODULES: `${join(REPO_ROOT, 'examples/order-processing/dist/service-workers.js')},${failsFirst}`,
        },
        logDir,
        await freePort(),
      ),
      monitor,
    ];
    await Promise.all(services.map((s) => s.start()));
    base = `http://127.0.0.1:${monitor.httpPort}`;
    orchestrator = connect(`127.0.0.1:${orchestratorPort}`);
    await orchestrator.registerWorkflow(parseDefinition(readFileSync(WORKFLOW_FILE, 'utf8')));
    await orchestrator.registerWorkflow(APPROVAL_FLOW);
    await orchestrator.registerWorkflow(RETRY_FLOW);
    await orchestrator.registerWorkflow(BULK_FLOW);
    // The test's own door to the bus: it publishes a poisoned event for the dead-letter page.
    adapters = await openBackend({ backend: 'redis', redisUrl: broker.url, prefix });
    profile = mkdtempSync(join(tmpdir(), 'dashboard-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(WAIT_MS);
  }, 720_000);

  afterAll(async () => {
    await context?.close();
    if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
    if (modules !== undefined) rmSync(modules, { recursive: true, force: true });
    await adapters?.close().catch(() => undefined);
    orchestrator?.close();
    await Promise.all(services.map((s) => s.stop()));
    await broker?.stop();
  }, 120_000);

  it('lists a compensated order and draws its compensations after the forward steps, undo newest first', async () => {
    const { txId } = await orchestrator.startWorkflow('order_processing', {
      orderId: 'o-1',
      total: 12,
      failShipping: true,
    });
    await waitFor(async () => (await orchestrator.getWorkflow(txId)).state === RunState.Compensated, {
      timeoutMs: WAIT_MS,
      intervalMs: 50,
      description: 'run compensated',
    });
    await page.goto(`${base}/`);
    const row = page.locator('table.runs tbody tr', { hasText: txId });
    await row.locator('text=compensated').waitFor();
    await row.getByRole('link', { name: txId }).click();
    await page.waitForURL(`${base}/runs/${txId}`);
    await page.locator('#run-state', { hasText: 'compensated' }).waitFor();
    // The monitor records the timeline from the events: wait until the page shows all of it.
    await waitFor(
      async () => {
        await page.reload();
        return (await page.locator('.events tbody tr', { hasText: 'workflow.compensated' }).count()) > 0;
      },
      { timeoutMs: WAIT_MS, intervalMs: 200, description: 'timeline on the page' },
    );
    const bars = await page
      .locator('.gantt .bar')
      .evaluateAll((els) =>
        els.map((el) => `${el.getAttribute('data-kind')}:${el.getAttribute('data-step')}`),
      );
    const forward = bars.filter((b) => b.startsWith('attempt:'));
    const undo = bars.filter((b) => b.startsWith('compensation:'));
    expect(forward.length).toBeGreaterThanOrEqual(3);
    expect(undo).toEqual(['compensation:undo charge_payment', 'compensation:undo reserve_inventory']);
    expect(bars.indexOf(undo[0] ?? '')).toBeGreaterThan(bars.lastIndexOf(forward.at(-1) ?? ''));
    await page.getByRole('link', { name: 'Failures only' }).click();
    await page.locator('.events tbody tr', { hasText: 'step.failed' }).first().waitFor();
    expect(await page.locator('.events tbody tr', { hasText: 'workflow.started' }).count()).toBe(0);
  });

  it('shows a run started after the page opened, then a signal from its page completes it live', async () => {
    await page.goto(`${base}/?workflowId=${APPROVAL_FLOW.id}`);
    await page.locator('table.runs').waitFor();
    // A run started now must appear without a reload: wait until the page holds its event stream
    // and the monitor follows the event feed (which it starts doing for the first page that asks).
    await waitFor(
      async () => {
        const { dashboardStreams, dashboardFollowing } = await stats(base);
        return dashboardStreams > 0 && dashboardFollowing === 1;
      },
      {
        timeoutMs: WAIT_MS,
        intervalMs: 50,
        description: 'the page connected to /events',
      },
    );
    const { txId } = await orchestrator.startWorkflow(APPROVAL_FLOW.id, { item: '<b>x</b>' });
    const link = page.locator('table.runs').getByRole('link', { name: txId });
    await link.waitFor();
    await link.click();
    await page.locator('#run-state', { hasText: 'waiting' }).waitFor();
    await page.getByText('"<b>x</b>"').first().waitFor({ state: 'attached' });
    const form = page.locator('form.action', { has: page.getByRole('button', { name: 'Send signal' }) });
    await form.getByLabel('Signal').fill('approved');
    await form.getByLabel('Payload (JSON)').fill('{"by":"browser"}');
    await form.getByRole('button', { name: 'Send signal' }).click();
    await page.locator('#flash', { hasText: 'signal sent' }).waitFor();
    // No reload: the state changes through the SSE-triggered refresh of the run's section.
    await page.locator('#run-state', { hasText: 'completed' }).waitFor();
    expect(page.url()).toBe(`${base}/runs/${txId}`);
    const run = await orchestrator.getWorkflow(txId);
    expect(run.state).toBe(RunState.Completed);
    expect(run.context['approval']).toEqual({ by: 'browser' });
  });

  it('cancels a waiting run from its page, and the open page shows it cancelled', async () => {
    const { txId } = await orchestrator.startWorkflow(APPROVAL_FLOW.id, {});
    await page.goto(`${base}/runs/${txId}`);
    await page.locator('#run-state', { hasText: 'waiting' }).waitFor();
    await page.getByRole('button', { name: 'Cancel run' }).click();
    await page.locator('#run-state', { hasText: /^cancelled$/ }).waitFor();
    expect((await orchestrator.getWorkflow(txId)).state).toBe(RunState.Cancelled);
    // A terminal run offers no action any more.
    await page.getByText('No action applies in this state.').waitFor();
  });
  it('retries the failed step of a failed run from its page, and the run ends completed', async () => {
    const { txId } = await orchestrator.startWorkflow(RETRY_FLOW.id, {});
    await waitFor(async () => (await orchestrator.getWorkflow(txId)).state === RunState.Failed, {
      timeoutMs: WAIT_MS,
      intervalMs: 50,
      description: 'run failed',
    });
    await page.goto(`${base}/runs/${txId}`);
    await page.locator('#run-state', { hasText: /^failed$/ }).waitFor();
    await page.getByRole('button', { name: 'Retry flaky' }).click();
    await page.locator('#run-state', { hasText: 'completed' }).waitFor();
    const run = await orchestrator.getWorkflow(txId);
    expect(run.state).toBe(RunState.Completed);
    expect(run.context).toMatchObject({ attempt: 2 });
  });

  it('replays a poisoned event from the dead-letter page, the monitor handles it again, then discards it', async () => {
    const before = (await stats(base)) as unknown as Record<string, number>;
    const poisoned: Envelope = {
      id: `poisoned-${process.pid}`,
      type: EventType.WorkflowTransitioned,
      txId: 'tx-poisoned',
      workflowId: 'order_processing',
      time: Date.now(),
      headers: {},
      payload: { version: -1, state: '<script>alert(1)</script>', events: 'none' },
    };
    await adapters.bus.publish(Topics.events, [poisoned]);
    const row = page.locator('tbody tr', { hasText: poisoned.id });
    await waitFor(
      async () => {
        await page.goto(`${base}/dead-letters`);
        return (await row.count()) === 1;
      },
      { timeoutMs: WAIT_MS, intervalMs: 200, description: 'the poisoned event on the dead-letter page' },
    );
    // The payload is shown as text, never run.
    await row.locator('summary', { hasText: 'payload' }).click();
    await row.getByText('"<script>alert(1)</script>"').waitFor();
    await row.getByRole('button', { name: 'Replay' }).click();
    await page.locator('#letters [role=status]', { hasText: 'Replayed' }).waitFor();
    // Handed to the monitor again, it is refused again: its counter proves the replay happened.
    await waitFor(
      async () => {
        const now = (await stats(base)) as unknown as Record<string, number>;
        return (now['rejected_bad_transition'] ?? 0) >= (before['rejected_bad_transition'] ?? 0) + 2;
      },
      { timeoutMs: WAIT_MS, intervalMs: 100, description: 'the replayed event handled again' },
    );
    // Refused again, it is a dead letter again: discarded for good this time, after a confirmation.
    await waitFor(
      async () => {
        await page.goto(`${base}/dead-letters`);
        return (await row.count()) === 1;
      },
      { timeoutMs: WAIT_MS, intervalMs: 200, description: 'the poisoned event dead again' },
    );
    page.once('dialog', (dialog) => void dialog.accept());
    await row.getByRole('button', { name: 'Discard' }).click();
    await page.locator('#letters [role=status]', { hasText: 'Discarded' }).waitFor();
    expect(await row.count()).toBe(0);
    await page.reload();
    await page.locator('main h1', { hasText: 'Dead letters' }).waitFor();
    expect(await row.count()).toBe(0);
  });

  it('cancels the runs a filter selects in bulk, after a confirmation that says how many, by keyboard', async () => {
    const started = await Promise.all(
      [1, 2, 3].map(async () => (await orchestrator.startWorkflow(BULK_FLOW.id, {})).txId),
    );
    await waitFor(
      async () =>
        (await Promise.all(started.map((id) => orchestrator.getWorkflow(id)))).every(
          (r) => r.state === RunState.Waiting,
        ),
      { timeoutMs: WAIT_MS, intervalMs: 50, description: 'three runs waiting' },
    );
    await page.goto(`${base}/?workflowId=${BULK_FLOW.id}&state=waiting`);
    await page.getByRole('link', { name: 'Cancel them…' }).click();
    await page.getByRole('heading', { name: 'Cancel 3 runs?' }).waitFor();
    // The confirm button has the focus: Enter confirms, no mouse needed.
    await page.keyboard.press('Enter');
    await page.locator('#bulk-result', { hasText: 'Cancelled 3 runs; 0 skipped' }).waitFor();
    await waitFor(
      async () =>
        (await Promise.all(started.map((id) => orchestrator.getWorkflow(id)))).every(
          (r) => r.state === RunState.Cancelled,
        ),
      { timeoutMs: WAIT_MS, intervalMs: 50, description: 'the three runs cancelled' },
    );
  });

  it('fits a phone-width screen without sideways scrolling, and its links are reachable by Tab', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      for (const path of ['/', '/dead-letters', '/workers', '/stuck']) {
        await page.goto(`${base}${path}`);
        await page.locator('main h1').waitFor();
        const overflow = await page.evaluate(
          'document.documentElement.scrollWidth - document.documentElement.clientWidth',
        );
        expect({ path, overflow }).toEqual({ path, overflow: 0 });
      }
      await page.goto(`${base}/`);
      await page.keyboard.press('Tab');
      expect(await page.evaluate('document.activeElement.textContent.trim()')).toBe('Runs');
      await page.keyboard.press('Tab');
      expect(await page.evaluate('document.activeElement.textContent.trim()')).toBe('Stuck');
    } finally {
      await page.setViewportSize({ width: 1280, height: 800 });
    }
  });
});
