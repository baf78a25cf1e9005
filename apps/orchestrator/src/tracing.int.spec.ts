/**
 * Issue 9 item 2: one trace per run, across processes and restarts. Separate orchestrator and
 * worker-manager processes on a private Redis, and again on a private NATS (JetStream), export OTLP/HTTP protobuf to a receiver inside this
 * test. A compensated order gives exactly one trace: the root (a child of the caller's
 * traceparent sent as gRPC metadata), one PRODUCER span per dispatch, one CONSUMER span per
 * attempt in the other process under its own dispatch, the compensations newest first, and the
 * run span with its outcome; the worker's log lines carry the trace and span ids. Then the
 * orchestrator is killed -9 mid-run and restarted: the run goes on in the same trace.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type MultiAgentsClient } from '@multiagents/client';
import {
  freePort,
  OtlpReceiver,
  OtlpSpanKind,
  ServiceProcess,
  startNatsServer,
  startRedisServer,
  waitFor,
  type ReceivedSpan,
  type ServerProcess,
} from '@multiagents/testing';

const REPO_ROOT = join(__dirname, '..', '..', '..');
const ORCHESTRATOR = join(REPO_ROOT, 'apps/orchestrator/dist/main.js');
const WORKER_MANAGER = join(REPO_ROOT, 'apps/worker-manager/dist/main.js');
const WORKFLOW = join(REPO_ROOT, 'examples/order-processing/src/workflow.yaml');
const WORKERS = join(REPO_ROOT, 'examples/order-processing/dist/service-workers.js');

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

beforeAll(() => {
  execFileSync(
    'bash',
    [
      'scripts/build-quiet.sh',
      '@multiagents/orchestrator',
      '@multiagents/worker-manager',
      '@multiagents/example-order-processing',
    ],
    { cwd: REPO_ROOT, stdio: 'inherit', timeout: 300_000 },
  );
}, 300_000);

let broker: ServerProcess | undefined;
let receiver: OtlpReceiver | undefined;
let services: ServiceProcess[] = [];
let client: MultiAgentsClient | undefined;

afterEach(async () => {
  client?.close();
  await Promise.all(services.map((s) => s.stop()));
  await broker?.stop();
  await receiver?.close();
  services = [];
  client = undefined;
  broker = undefined;
  receiver = undefined;
});

type Backend = 'redis' | 'nats';

/** An orchestrator and a worker-manager on a private broker, tracing everything to the receiver. */
async function startStack(
  backend: Backend,
  logDir: string,
): Promise<{
  orchestrator: ServiceProcess;
  workerManager: ServiceProcess;
  grpcPort: number;
}> {
  broker = backend === 'redis' ? await startRedisServer() : await startNatsServer();
  receiver = await OtlpReceiver.start();
  const env = {
    MULTIAGENTS_BACKEND: backend,
    ...(backend === 'redis' ? { REDIS_URL: broker.url } : { NATS_URL: broker.url }),
    MULTIAGENTS_PREFIX: `tracing-${Date.now()}`,
    LOG_LEVEL: 'info',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_TRACES_SAMPLER: 'parentbased_always_on',
  };
  const grpcPort = await freePort();
  const orchestrator = new ServiceProcess(
    'orchestrator',
    ORCHESTRATOR,
    { ...env, MULTIAGENTS_DEFINITIONS: WORKFLOW, GRPC_PORT: String(grpcPort) },
    logDir,
    await freePort(),
  );
  const workerManager = new ServiceProcess(
    'worker-manager',
    WORKER_MANAGER,
    { ...env, MULTIAGENTS_WORKER_MODULES: WORKERS },
    logDir,
    await freePort(),
  );
  services = [orchestrator, workerManager];
  return { orchestrator, workerManager, grpcPort };
}

function spansOf(txId: string): ReceivedSpan[] {
  return (receiver as OtlpReceiver).spans.filter((s) => s.attributes['multiagents.run.id'] === txId);
}

function named(spans: readonly ReceivedSpan[], name: string): ReceivedSpan[] {
  return spans.filter((s) => s.name === name);
}

async function terminal(txId: string): Promise<string> {
  let state = '';
  await waitFor(
    async () => {
      state = (await (client as MultiAgentsClient).getWorkflow(txId)).state;
      return ['completed', 'compensated', 'failed', 'compensation_failed', 'cancelled'].includes(state);
    },
    { timeoutMs: 30_000, intervalMs: 50, description: `run ${txId} terminal` },
  );
  return state;
}

describe.each<Backend>(['redis', 'nats'])('one trace per run across processes (%s)', (backend) => {
  it('traces a compensated order through the orchestrator and a worker-manager', async () => {
    const logDir = join(REPO_ROOT, 'tmp', 'tracing-logs', `compensated-${backend}-${Date.now()}`);
    const { orchestrator, workerManager, grpcPort } = await startStack(backend, logDir);
    await Promise.all([orchestrator.start(30_000), workerManager.start(30_000)]);
    client = connect(`127.0.0.1:${grpcPort}`);
    const { txId } = await client.startWorkflow(
      'order_processing',
      { orderId: 'o-1', total: 10, failShipping: true },
      { traceHeaders: { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` } },
    );
    expect(await terminal(txId)).toBe('compensated');
    // Each process exports in batches: wait until the last spans of both have come.
    await waitFor(
      () =>
        named(spansOf(txId), 'workflow.run order_processing').length === 1 &&
        named(spansOf(txId), 'process inventory.release').length === 1,
      { timeoutMs: 15_000, description: 'the run span and the last attempt span' },
    );
    const spans = spansOf(txId);

    // Exactly one trace: the caller's.
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([CALLER_TRACE]));
    const roots = named(spans, 'workflow.start order_processing');
    expect(roots).toHaveLength(1);
    const root = roots[0] as ReceivedSpan;
    expect(root.parentSpanId).toBe(CALLER_SPAN);
    expect(root.serviceName).toBe('orchestrator');

    // One dispatch per command, PRODUCER children of the root, in the orchestrator.
    const dispatchNames = [
      'step reserve_inventory',
      'step charge_payment',
      'step ship_order',
      'compensate charge_payment',
      'compensate reserve_inventory',
    ];
    const dispatches = spans.filter((s) => s.kind === OtlpSpanKind.Producer);
    expect(dispatches.map((s) => s.name).sort()).toEqual([...dispatchNames].sort());
    for (const dispatch of dispatches) {
      expect(dispatch.parentSpanId).toBe(root.spanId);
      expect(dispatch.serviceName).toBe('orchestrator');
      expect(dispatch.attributes['messaging.system']).toBe(backend);
      expect(dispatch.attributes['messaging.operation.type']).toBe('send');
      expect(dispatch.attributes['multiagents.workflow.id']).toBe('order_processing');
    }

    // One attempt span per attempt, CONSUMER, in the worker-manager, under its own dispatch.
    const attempts = spans.filter((s) => s.kind === OtlpSpanKind.Consumer);
    expect(attempts.map((s) => s.name).sort()).toEqual(
      [
        'process inventory.reserve',
        'process payment.charge',
        'process shipping.ship',
        'process payment.refund',
        'process inventory.release',
      ].sort(),
    );
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    for (const attempt of attempts) {
      expect(attempt.serviceName).toBe('worker-manager');
      const parent = byId.get(attempt.parentSpanId);
      expect(parent?.kind).toBe(OtlpSpanKind.Producer);
      expect(parent?.attributes['multiagents.step.name']).toBe(attempt.attributes['multiagents.step.name']);
      expect(parent?.attributes['messaging.message.id']).toBe(attempt.attributes['messaging.message.id']);
      expect(attempt.attributes['multiagents.attempt']).toBe(1);
      expect(attempt.attributes['messaging.consumer.group.name']).toBe('workers');
      expect(attempt.attributes['messaging.operation.type']).toBe('process');
    }
    const ship = named(spans, 'process shipping.ship')[0] as ReceivedSpan;
    expect(ship.statusCode).toBe(2);
    expect(ship.attributes['error.type']).toBe('CARRIER_REFUSED');
    expect(ship.attributes['multiagents.outcome']).toBe('failed');

    // Compensations newest first: refund, then release.
    const refund = named(spans, 'process payment.refund')[0] as ReceivedSpan;
    const release = named(spans, 'process inventory.release')[0] as ReceivedSpan;
    const compensateCharge = named(spans, 'compensate charge_payment')[0] as ReceivedSpan;
    const compensateReserve = named(spans, 'compensate reserve_inventory')[0] as ReceivedSpan;
    expect(compensateCharge.startMs).toBeLessThanOrEqual(compensateReserve.startMs);
    expect(refund.endMs).toBeLessThanOrEqual(release.startMs);
    expect(ship.endMs).toBeLessThanOrEqual(refund.startMs);

    // The run span: the whole run, with its outcome.
    const run = named(spans, 'workflow.run order_processing')[0] as ReceivedSpan;
    expect(run.parentSpanId).toBe(root.spanId);
    expect(run.attributes['multiagents.outcome']).toBe('compensated');
    expect(run.attributes['error.type']).toBe('CARRIER_REFUSED');
    expect(run.statusCode).toBe(2);
    expect(run.startMs).toBeLessThanOrEqual(root.endMs);
    expect(run.endMs).toBeGreaterThanOrEqual(release.endMs - 1);

    // The worker's log line of the failed attempt carries its trace and span ids.
    const lines = readFileSync(join(logDir, 'worker-manager.log'), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const failedLine = lines.find((l) => l['txId'] === txId && String(l['msg']).startsWith('attempt failed'));
    expect(failedLine).toMatchObject({ trace_id: CALLER_TRACE, span_id: ship.spanId, step: 'ship_order' });
  }, 120_000);

  it('keeps the trace id when the orchestrator is killed -9 and restarted mid-run', async () => {
    const logDir = join(REPO_ROOT, 'tmp', 'tracing-logs', `restart-${backend}-${Date.now()}`);
    const { orchestrator, workerManager, grpcPort } = await startStack(backend, logDir);
    // No worker-manager yet: the run stops after its first dispatch, its command waiting in the broker.
    await orchestrator.start(30_000);
    client = connect(`127.0.0.1:${grpcPort}`);
    const { txId } = await client.startWorkflow('order_processing', { orderId: 'o-2', total: 5 });
    await waitFor(
      () =>
        named(spansOf(txId), 'workflow.start order_processing').length === 1 &&
        named(spansOf(txId), 'step reserve_inventory').length === 1,
      { timeoutMs: 15_000, description: 'the first incarnation exported the root and the first dispatch' },
    );
    const [root] = named(spansOf(txId), 'workflow.start order_processing') as [ReceivedSpan];
    expect(root.parentSpanId).toBe('');

    orchestrator.signal('SIGKILL');
    expect(await orchestrator.exited()).toMatchObject({ signal: 'SIGKILL' });
    client.close();
    await orchestrator.start(30_000);
    await workerManager.start(30_000);
    client = connect(`127.0.0.1:${grpcPort}`);
    expect(await terminal(txId)).toBe('completed');
    await waitFor(
      () =>
        named(spansOf(txId), 'workflow.run order_processing').length === 1 &&
        named(spansOf(txId), 'process shipping.ship').length >= 1,
      { timeoutMs: 15_000, description: 'the run span and the last attempt span' },
    );
    const spans = spansOf(txId);
    // One trace, one root: the restarted orchestrator went on from the run record's context.
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([root.traceId]));
    expect(named(spans, 'workflow.start order_processing')).toHaveLength(1);
    for (const name of ['step charge_payment', 'step ship_order', 'workflow.run order_processing']) {
      const [span] = named(spans, name);
      expect(span?.parentSpanId).toBe(root.spanId);
    }
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const attempts = spans.filter((s) => s.kind === OtlpSpanKind.Consumer);
    expect(new Set(attempts.map((s) => s.name))).toEqual(
      new Set(['process inventory.reserve', 'process payment.charge', 'process shipping.ship']),
    );
    for (const attempt of attempts) expect(byId.get(attempt.parentSpanId)?.kind).toBe(OtlpSpanKind.Producer);
    expect(named(spans, 'workflow.run order_processing')[0]?.attributes['multiagents.outcome']).toBe(
      'completed',
    );
    expect(orchestrator.exits.map((e) => e.signal)).toContain('SIGKILL');
  }, 120_000);
});
