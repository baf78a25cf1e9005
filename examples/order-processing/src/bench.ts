/**
 * `pnpm bench`: the SPEC §8 benchmark (`pnpm bench --help` lists the options). Runs N order sagas,
 * verifies every final state and context (and, in one process, every effect: applied once, undone
 * newest first, each undo after its do), and prints one JSON line. In the same run it measures the
 * floor and prints the ratio: for memory, the same worker functions called directly in a loop; for
 * redis and nats, the same saga written by hand on the same broker. With a broker it also prints
 * what one step costs the broker (commands or messages, and bytes), ours next to the floor's.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openBackend } from '@multiagents/backends';
import { EventType, RunState, Topics, createKeyRing, type Run } from '@multiagents/contracts';
import { Orchestrator, silentLogger, type EventBus } from '@multiagents/core';
import { defaultMaxActiveRuns, startEmbedded } from '@multiagents/embedded';
import {
  freePort,
  ServiceProcess,
  startNatsClusterProcesses,
  startNatsServer,
  startRedisClusterProcesses,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { createTracing, parseTracingConfig, type Tracing } from '@multiagents/telemetry';
import type { WorkerContext } from '@multiagents/worker-sdk';
import { counterDelta, natsCounters, redisCounters, type BrokerCounters } from './broker-stats';
import {
  createOrderWorkers,
  EffectsLedger,
  makeOrderBook,
  type OrderInput,
  type OrderList,
} from './order-workers';
import { observeOrchestrator, runOrders } from './run-orders';
import { measureRedisFloor } from './redis-floor';
import { measureNatsFloor } from './nats-floor';
import { orderWorkflow } from './workflow';
import { orderEffectKeys, verifyOrderRun } from './verify-orders';

const BACKENDS = ['memory', 'redis', 'nats'] as const;

/**
 * Tracing of the runs this process starts (and, in the embedded mode, runs), from the standard
 * OTEL_* variables like the services (which inherit them): off unless an endpoint is set.
 */
async function benchTracing(messagingSystem: string): Promise<Tracing | undefined> {
  const config = parseTracingConfig(process.env, { serviceName: 'bench' });
  return config === undefined ? undefined : createTracing(config, { messagingSystem });
}

/** Services that only watch the runs (their own consumer groups on the events), run as extra processes. */
const OBSERVERS = ['metrics-collector', 'event-monitor'] as const;
type Observer = (typeof OBSERVERS)[number];

const USAGE = `pnpm bench [options]: the SPEC §8 order-saga benchmark; prints one JSON line

  --backend memory|redis|nats  memory (default): the embedded mode in this process;
                               redis / nats: a private server, the orchestrator and the
                               worker-managers as separate processes
  --n N                        workflows to run (default 10000)
  --fail-rate F                share of orders whose shipping fails, 0..1 (default 0.1)
  --concurrency C              start requests in flight (default 200), or with --closed
                               whole workflows in flight
  --closed                     closed loop: measures latency (p50/p95/p99)
  --partitions P               Redis partitions (default 1)
  --worker-managers K          redis / nats: worker-manager processes (default 1: one process
                               per service, the smallest deployment; more compete for the
                               same cores on a small machine, see the README)
  --workers-in-orchestrator    redis / nats: the orchestrator process hosts the workers and
                               hands them commands without the bus (eager dispatch); no
                               worker-manager process unless --worker-managers says so
  --max-active-runs M          memory: runs in progress beyond which starts wait (default:
                               the embedded mode's, twice the workers' slots, here
                               ${defaultMaxActiveRuns(createOrderWorkers())}; 0 holds no start back)
  --cluster                    redis: a private 3-master Redis Cluster instead of one server;
                               nats: a 3-node JetStream cluster with R3 streams and buckets
                               (no floor is measured on a cluster)
  --encrypt                    redis / nats: every service and this bench share a payload key
                               (MULTIAGENTS_PAYLOAD_KEYS): payloads encrypted on the bus and
                               run data sealed at rest, as a production deployment would run
  --observers LIST             redis / nats: also run these services, comma-separated, as
                               extra processes: metrics-collector, event-monitor (their cost)
  --seed S                     seed of the failing orders (default 42)
  --warmup W                   first run W other orders the same way, not measured (default
                               0), and W orders through the floor before it: the figures
                               are then those of warm processes (JIT, caches, connections);
                               maxRssMb still covers the whole process life
  --repeat R                   measure R times, each run followed by its floor, and print
                               the run with the median ratio to its floor, with every run's
                               figures in "runs" (default 1; a shared machine is noisy)
  --json                       only the JSON line
  --help                       this text`;

interface BenchArgs {
  backend: (typeof BACKENDS)[number];
  n: number;
  failRate: number;
  concurrency: number;
  closed: boolean;
  json: boolean;
  seed: number;
  partitions: number;
  workerManagers: number;
  workersInOrchestrator: boolean;
  /** Undefined: the embedded mode's default. */
  maxActiveRuns: number | undefined;
  observers: Observer[];
  encrypt: boolean;
  cluster: boolean;
  repeat: number;
  warmup: number;
}

function parse(): BenchArgs {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        backend: { type: 'string', default: 'memory' },
        n: { type: 'string', default: '10000' },
        'fail-rate': { type: 'string', default: '0.1' },
        concurrency: { type: 'string', default: '200' },
        closed: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        seed: { type: 'string', default: '42' },
        partitions: { type: 'string', default: '1' },
        'worker-managers': { type: 'string' },
        'workers-in-orchestrator': { type: 'boolean', default: false },
        'max-active-runs': { type: 'string' },
        observers: { type: 'string', default: '' },
        encrypt: { type: 'boolean', default: false },
        cluster: { type: 'boolean', default: false },
        repeat: { type: 'string', default: '1' },
        warmup: { type: 'string', default: '0' },
        help: { type: 'boolean', default: false },
      },
      allowPositionals: false,
    }));
  } catch (err) {
    console.error(`bench: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const args = {
    backend: values.backend as BenchArgs['backend'],
    n: Number(values.n),
    failRate: Number(values['fail-rate']),
    concurrency: Number(values.concurrency),
    closed: values.closed,
    json: values.json,
    seed: Number(values.seed),
    partitions: Number(values.partitions),
    workerManagers: Number(values['worker-managers'] ?? (values['workers-in-orchestrator'] ? 0 : 1)),
    workersInOrchestrator: values['workers-in-orchestrator'],
    maxActiveRuns: values['max-active-runs'] === undefined ? undefined : Number(values['max-active-runs']),
    encrypt: values.encrypt,
    cluster: values.cluster,
    repeat: Number(values.repeat),
    warmup: Number(values.warmup),
    observers: values.observers
      .split(',')
      .map((o) => o.trim())
      .filter((o) => o !== '') as Observer[],
  };
  const problems: string[] = [];
  if (!(BACKENDS as readonly string[]).includes(args.backend)) {
    problems.push(`--backend ${args.backend}: must be one of ${BACKENDS.join(', ')}`);
  }
  if (!Number.isInteger(args.n) || args.n < 1) problems.push('--n must be a positive integer');
  if (!(args.failRate >= 0 && args.failRate <= 1)) problems.push('--fail-rate must be between 0 and 1');
  if (!Number.isInteger(args.concurrency) || args.concurrency < 1)
    problems.push('--concurrency must be a positive integer');
  if (!Number.isInteger(args.seed)) problems.push('--seed must be an integer');
  if (!Number.isInteger(args.repeat) || args.repeat < 1 || args.repeat > 20)
    problems.push('--repeat must be an integer from 1 to 20');
  if (!Number.isInteger(args.warmup) || args.warmup < 0) problems.push('--warmup must be an integer >= 0');
  if (!Number.isInteger(args.partitions) || args.partitions < 1 || args.partitions > 1024)
    problems.push('--partitions must be an integer from 1 to 1024');
  const fewestManagers = args.workersInOrchestrator ? 0 : 1;
  if (
    !Number.isInteger(args.workerManagers) ||
    args.workerManagers < fewestManagers ||
    args.workerManagers > 16
  )
    problems.push(`--worker-managers must be an integer from ${fewestManagers} to 16`);
  if (args.workersInOrchestrator && args.backend === 'memory') {
    problems.push(
      '--workers-in-orchestrator needs --backend redis or nats (the embedded mode always does it)',
    );
  }
  if (args.maxActiveRuns !== undefined && (!Number.isInteger(args.maxActiveRuns) || args.maxActiveRuns < 0))
    problems.push('--max-active-runs must be an integer >= 0');
  for (const observer of args.observers) {
    if (!(OBSERVERS as readonly string[]).includes(observer)) {
      problems.push(`--observers ${observer}: must be among ${OBSERVERS.join(', ')}`);
    }
  }
  if (args.observers.length > 0 && args.backend === 'memory') {
    problems.push('--observers needs --backend redis or nats (they are separate processes)');
  }
  if (args.encrypt && args.backend === 'memory') {
    problems.push('--encrypt needs --backend redis or nats (nothing leaves the process embedded)');
  }
  if (args.cluster && args.backend === 'memory') {
    problems.push('--cluster needs --backend redis or nats');
  }
  if (problems.length > 0) {
    console.error(`bench: ${problems.join('; ')}\n\n${USAGE}`);
    process.exit(2);
  }
  return args;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round((sorted[Math.max(0, index)] as number) * 100) / 100;
}

/**
 * The same worker functions, called directly: no bus, no state, no engine. The `warm` orders go
 * through first, not timed.
 */
async function measureFloor(orders: OrderList, warm: OrderList): Promise<number> {
  const byName = new Map(createOrderWorkers(new EffectsLedger()).map((w) => [w.name, w.handler]));
  // Nothing is ever aborted here: one signal serves every call (an AbortController per call cost
  // the floor a twentieth of its time, which only flattered the ratio).
  const signal = new AbortController().signal;
  const call = async (name: string, input: OrderInput, key: string): Promise<unknown> => {
    const ctx = { idempotencyKey: key, signal, logger: silentLogger } as unknown as WorkerContext;
    return (byName.get(name) as (i: never, c: WorkerContext) => unknown)(input as never, ctx);
  };
  const sagas = async (list: OrderList, name: string): Promise<void> => {
    for (let i = 0; i < list.length; i++) {
      const order = list.at(i) as OrderInput;
      const tx = `${name}-${i}`;
      let context: Record<string, unknown> = { ...order };
      context = { ...context, ...((await call('inventory.reserve', order, `${tx}:r`)) as object) };
      context = { ...context, ...((await call('payment.charge', order, `${tx}:c`)) as object) };
      try {
        context = { ...context, ...((await call('shipping.ship', order, `${tx}:s`)) as object) };
      } catch {
        await call('payment.refund', order, `${tx}:c:undo`);
        await call('inventory.release', order, `${tx}:r:undo`);
      }
    }
  };
  await sagas(warm, 'warm');
  const started = performance.now();
  await sagas(orders, 'floor');
  return performance.now() - started;
}

/** Counts of the verified runs. */
class Tally {
  completed = 0;
  compensated = 0;
  /** Steps done, compensations included (attempts). */
  steps = 0;
  readonly problems: string[] = [];

  add(run: Run, problems: readonly string[]): void {
    if (run.state === RunState.Completed) this.completed++;
    if (run.state === RunState.Compensated) this.compensated++;
    for (const step of Object.values(run.steps)) {
      this.steps += step.attempts.length + (step.compensation?.attempts.length ?? 0);
    }
    if (this.problems.length < 100) this.problems.push(...problems);
  }
}

/** A broker's cost over one measured part: counters and the steps they were spent on. */
interface BrokerCost {
  readonly delta: BrokerCounters;
  readonly steps: number;
}

/** What one backend's run produced, for the common report. */
interface Measured {
  /** Each order's latency, start request to terminal state observed. */
  readonly latenciesMs: Float64Array;
  readonly tally: Tally;
  readonly wallMs: number;
  /** CPU time of this process over the measured part (the embedded mode: everything). */
  readonly cpuMs?: number;
  readonly maxRssMb: number;
  /** The embedded mode: the longest the event loop went without turning (see `watchLoopStalls`). */
  readonly loopStallMaxMs?: number;
  readonly floorMs: number;
  readonly floor: string;
  readonly ours?: BrokerCost;
  readonly floorCost?: BrokerCost;
  /** CPU time each process used over the measured part (ms), by name. */
  readonly cpuByProcess?: Readonly<Record<string, number>>;
  /** Write system calls of each process over the measured part, and over the floor's run. */
  readonly writesByProcess?: Readonly<Record<string, number>>;
  readonly floorWritesByProcess?: Readonly<Record<string, number>>;
  /** Events each observer's group had not read or acknowledged yet when the last run ended. */
  readonly observersBehindAtEnd?: Readonly<Record<string, number>>;
  /** --workers-in-orchestrator: commands the orchestrator ran on its own workers, without the bus. */
  readonly localDispatched?: number;
}

/** CPU time a process has used so far (user + system), in ms; 0 when unknown. */
function cpuTimeMs(pid: number | undefined): number {
  try {
    const fields =
      readFileSync(`/proc/${pid ?? 'self'}/stat`, 'utf8')
        .split(') ')[1]
        ?.split(' ') ?? [];
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat (12 and 13 after the name), in ticks.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

/**
 * Write system calls a process has made so far (`syscw` of /proc/<pid>/io); undefined where there
 * is no such file. On loopback each one also runs the reader's side of TCP and its wake-up, so
 * they are a cost of their own (see docs/architecture.md).
 */
function writeCalls(pid: number | undefined): number | undefined {
  try {
    const io = readFileSync(`/proc/${pid ?? 'self'}/io`, 'utf8');
    const calls = Number(/^syscw:\s+(\d+)/m.exec(io)?.[1]);
    return Number.isFinite(calls) ? calls : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts counting what `read` says of each named process (CPU time, write calls); the function
 * returned gives each one's growth since, rounded (a process `read` knows nothing of is left out).
 */
function countSince(
  pids: Readonly<Record<string, number | undefined>>,
  read: (pid: number | undefined) => number | undefined,
): () => Record<string, number> {
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, read(pid)]));
  return () => {
    const delta: Record<string, number> = {};
    for (const [name, pid] of Object.entries(pids)) {
      const now = read(pid);
      const then = before[name];
      if (now !== undefined && then !== undefined) delta[name] = Math.round(now - then);
    }
    return delta;
  };
}

/** Peak resident memory of a process (VmHWM), in MB; 0 when unknown. */
function peakRssMb(pid: number | undefined): number {
  try {
    const status = readFileSync(`/proc/${pid ?? 'self'}/status`, 'utf8');
    const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return Math.round(kb / 1024);
  } catch {
    return 0;
  }
}

/**
 * Watches how long the event loop goes without turning: returns a stop that gives the longest
 * stretch seen, in ms (how late a 5 ms interval timer fired, at worst). In the embedded mode the
 * engine runs in the caller's process, whose timers and sockets wait while it holds the loop.
 */
function watchLoopStalls(): () => number {
  const everyMs = 5;
  let last = performance.now();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - everyMs);
    last = now;
  }, everyMs);
  return () => {
    clearInterval(timer);
    return Math.round(Math.max(worst, performance.now() - last - everyMs));
  };
}

async function runEmbeddedBench(args: BenchArgs, orders: OrderList, warm: OrderList): Promise<Measured> {
  const ledger = new EffectsLedger();
  const tracing = await benchTracing('memory');
  const stack = await startEmbedded({
    workers: createOrderWorkers(ledger),
    definitions: [orderWorkflow],
    ...(args.maxActiveRuns === undefined
      ? {}
      : { runs: { maxActiveRuns: args.maxActiveRuns === 0 ? Infinity : args.maxActiveRuns } }),
    ...(tracing === undefined
      ? {}
      : {
          orchestrator: { observer: tracing.orchestratorObserver() },
          workerManager: { observer: tracing.workerObserver() },
        }),
  });
  const tally = new Tally();
  if (warm.length > 0) {
    await runOrders(stack.orchestrator, observeOrchestrator(stack.orchestrator), {
      orders: warm,
      concurrency: args.concurrency,
      closed: args.closed,
      timeoutMs: 30 * 60_000,
      onTerminal: (_, run) => ledger.forget(orderEffectKeys(run.txId)),
    });
  }
  const cpuBefore = process.cpuUsage();
  const loopStalls = watchLoopStalls();
  const started = performance.now();
  const { latenciesMs } = await runOrders(stack.orchestrator, observeOrchestrator(stack.orchestrator), {
    orders,
    concurrency: args.concurrency,
    closed: args.closed,
    timeoutMs: 30 * 60_000,
    // Each run is checked (state, context, effects) the moment it ends, then let go: the bench
    // itself keeps nothing per run but its latency, so memory shows what the engine keeps.
    onTerminal: (order, run) => {
      tally.add(run, verifyOrderRun(run, order, ledger));
      ledger.forget(orderEffectKeys(run.txId));
    },
  });
  const wallMs = performance.now() - started;
  const loopStallMaxMs = loopStalls();
  const cpu = process.cpuUsage(cpuBefore);
  const maxRssMb = peakRssMb(undefined);
  await stack.close();
  await tracing?.shutdown();
  return {
    latenciesMs,
    tally,
    wallMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    maxRssMb,
    loopStallMaxMs,
    floorMs: await measureFloor(orders, warm),
    floor: 'plain function calls',
  };
}

const REPO_ROOT = join(__dirname, '..', '..', '..');

/** Waits until no group on the events topic has anything unread or unacknowledged. */
function eventsCaughtUp(bus: EventBus, timeoutMs: number): Promise<void> {
  return waitFor(
    async () => {
      const stats = await bus.topicStats?.(Topics.events);
      return stats === undefined || stats.groups.every((g) => g.pending === 0 && (g.lag ?? 0) === 0);
    },
    { timeoutMs, intervalMs: 50, description: 'the event groups caught up with the warm-up' },
  );
}

const TERMINAL_STATES: ReadonlySet<string> = new Set([
  RunState.Completed,
  RunState.Compensated,
  RunState.Failed,
  RunState.Cancelled,
  RunState.CompensationFailed,
]);

async function runDistributedBench(args: BenchArgs, orders: OrderList, warm: OrderList): Promise<Measured> {
  const backend = args.backend as 'redis' | 'nats';
  // A production-like private server: Redis with the AOF on and fsync every second; NATS with a
  // monitoring port for its counters.
  // --cluster: 3 Redis masters (AOF, fsync every second) or 3 NATS servers (R3), all on this machine.
  const redisCluster =
    args.cluster && backend === 'redis'
      ? await startRedisClusterProcesses({ masters: 3, replicasPerMaster: 0, appendFsync: 'everysec' })
      : undefined;
  const natsCluster = args.cluster && backend === 'nats' ? await startNatsClusterProcesses(3) : undefined;
  const server: ServerProcess & { readonly monitorUrl?: string } = redisCluster
    ? { ...redisCluster.nodes[0]!, url: redisCluster.seeds, stop: () => redisCluster.stop() }
    : natsCluster
      ? {
          ...natsCluster.servers[0]!,
          url: natsCluster.seeds,
          stop: () => natsCluster.stop(),
        }
      : backend === 'redis'
        ? await startRedisServer({ appendOnly: true })
        : await startNatsServer({ monitor: true });
  const sum = (all: BrokerCounters[]): BrokerCounters =>
    all.reduce((a, b) => ({
      commands: a.commands + b.commands,
      scripts: a.scripts + b.scripts,
      bytesIn: a.bytesIn + b.bytesIn,
      byCommand: {},
    }));
  const counters = async (): Promise<BrokerCounters> =>
    redisCluster
      ? sum(await Promise.all(redisCluster.nodes.map((n) => redisCounters(n.url))))
      : natsCluster
        ? sum(await Promise.all(natsCluster.servers.map((n) => natsCounters(n.monitorUrl))))
        : backend === 'redis'
          ? redisCounters(server.url)
          : natsCounters(server.monitorUrl as string);
  const prefix = `bench-${Date.now()}`;
  const payloadKey = args.encrypt ? randomBytes(32) : undefined;
  const env = {
    MULTIAGENTS_BACKEND: backend,
    ...(backend === 'redis'
      ? { REDIS_URL: server.url, MULTIAGENTS_REDIS_PARTITIONS: String(args.partitions) }
      : { NATS_URL: server.url, ...(natsCluster ? { MULTIAGENTS_NATS_REPLICAS: '3' } : {}) }),
    MULTIAGENTS_PREFIX: prefix,
    LOG_LEVEL: 'warn',
    ...(payloadKey === undefined
      ? {}
      : { MULTIAGENTS_PAYLOAD_KEYS: `bench:${payloadKey.toString('base64')}` }),
  };
  const logDir = join(REPO_ROOT, 'tmp', 'bench-logs');
  const services = [
    new ServiceProcess(
      'orchestrator',
      join(REPO_ROOT, 'apps/orchestrator/dist/main.js'),
      {
        ...env,
        MULTIAGENTS_DEFINITIONS: join(REPO_ROOT, 'examples/order-processing/src/workflow.yaml'),
        ...(args.workersInOrchestrator
          ? { MULTIAGENTS_WORKER_MODULES: join(__dirname, 'service-workers.js') }
          : {}),
        GRPC_PORT: String(await freePort()),
      },
      logDir,
      await freePort(),
    ),
  ];
  for (const observer of args.observers) {
    const main = join(REPO_ROOT, 'apps', observer, 'dist', 'main.js');
    if (!existsSync(main)) throw new Error(`--observers ${observer}: ${main} is missing (build it first)`);
    services.push(new ServiceProcess(observer, main, env, logDir, await freePort()));
  }
  for (let i = 0; i < args.workerManagers; i++) {
    services.push(
      new ServiceProcess(
        `worker-manager-${i}`,
        join(REPO_ROOT, 'apps/worker-manager/dist/main.js'),
        { ...env, MULTIAGENTS_WORKER_MODULES: join(__dirname, 'service-workers.js') },
        logDir,
        await freePort(),
      ),
    );
  }
  const adapters = await openBackend({
    backend,
    prefix,
    ...(backend === 'redis'
      ? { redisUrl: server.url, redisPartitions: args.partitions, redisCluster: redisCluster !== undefined }
      : { natsUrl: server.url, ...(natsCluster ? { natsReplicas: 3 } : {}) }),
    ...(payloadKey === undefined
      ? {}
      : { busCodec: { payloadKeys: createKeyRing([['bench', payloadKey]]) } }),
  });
  // BENCH_PROFILE_DIR=<dir>: each service writes a V8 CPU profile there when it stops (a profile
  // beats a guess).
  const starterTracing = await benchTracing(backend);
  const profileDir = process.env['BENCH_PROFILE_DIR'];
  const nodeArgs = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  try {
    await Promise.all(services.map((s) => s.start(15_000, { nodeArgs })));
    // Runs are started here (as an API client would) and watched through their lifecycle events.
    // The runs start here: their root spans (and the sampling decision) are made here too.
    const starter = new Orchestrator({
      ...adapters,
      timerPollIntervalMs: 0,
      ...(starterTracing === undefined ? {} : { observer: starterTracing.orchestratorObserver() }),
    });
    await starter.registerWorkflow(orderWorkflow);
    const listeners = new Set<(txId: string) => void>();
    /** The warm-up's runs: a late copy of one of their events is not a measured run ending. */
    const warmTxIds = new Set<string>();
    // A tail, as the event-monitor's WatchEvents reads: no group of the bench's own on the broker.
    const watcher = await adapters.bus.tail(Topics.events, ({ type, txId, payload }) => {
      if (type !== EventType.WorkflowTransitioned) return;
      const state = (payload as { state?: string }).state;
      if (state === undefined || !TERMINAL_STATES.has(state) || warmTxIds.has(txId)) return;
      for (const l of listeners) l(txId);
    });
    const observe = (listener: (txId: string) => void): (() => void) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    };
    const timeoutMs = 30 * 60_000;
    const { concurrency, closed } = args;
    if (warm.length > 0) {
      const { outcomes } = await runOrders(starter, observe, {
        orders: warm,
        concurrency,
        closed,
        timeoutMs,
      });
      for (const outcome of outcomes) warmTxIds.add(outcome.txId);
      // The measured part starts once every group on the events (this bench's, the observers') has
      // read and acknowledged the warm-up's: none of its work spills into the figures.
      await eventsCaughtUp(adapters.bus, timeoutMs);
    }
    const before = await counters();
    const pids: Record<string, number | undefined> = {
      bench: undefined,
      ...Object.fromEntries(services.map((s) => [s.name, s.pid])),
      broker: server.pid(),
    };
    const cpuSince = countSince(pids, cpuTimeMs);
    const writesSince = countSince(pids, writeCalls);
    const orchestrator = services[0] as ServiceProcess;
    const localDispatched = async (): Promise<number> => (await orchestrator.stats())['localDispatched'] ?? 0;
    const localBefore = args.workersInOrchestrator ? await localDispatched() : 0;
    const started = performance.now();
    const { outcomes, latenciesMs } = await runOrders(starter, observe, {
      orders,
      concurrency,
      closed,
      timeoutMs,
    });
    const wallMs = performance.now() - started;
    const cpuByProcess = cpuSince();
    const writesByProcess = writesSince();
    const localAfter = args.workersInOrchestrator ? await localDispatched() : 0;
    const ours = counterDelta(before, await counters());
    const eventStats = await adapters.bus.topicStats?.(Topics.events);
    const observersBehindAtEnd = Object.fromEntries(
      args.observers.map((observer) => {
        const group = eventStats?.groups.find((g) => g.group === observer);
        return [observer, (group?.pending ?? 0) + (group?.lag ?? 0)];
      }),
    );
    await watcher.close();
    const maxRssMb = Math.max(...services.map((s) => peakRssMb(s.pid)));
    const tally = new Tally();
    for (let i = 0; i < outcomes.length; i += 200) {
      const batch = outcomes.slice(i, i + 200);
      const stored = await Promise.all(batch.map((o) => adapters.runs.get(o.txId)));
      batch.forEach((outcome, j) => {
        const run = stored[j]?.run;
        if (run) tally.add(run, verifyOrderRun(run, outcome.order));
        else tally.problems.push(`${outcome.txId}: missing`);
      });
    }
    await Promise.all(services.map((s) => s.stop()));
    // The hand-written floors talk to one server: not measured on a cluster (NaN: printed as null).
    const measureFloor = (list: OrderList): Promise<number> =>
      backend === 'redis'
        ? measureRedisFloor(server.url, list, concurrency)
        : measureNatsFloor(server.url, list, concurrency);
    if (!args.cluster && warm.length > 0) await measureFloor(warm);
    const floorBefore = await counters();
    // The floor runs in this process: its writes are this process's, and the broker's.
    const floorWritesSince = countSince({ bench: undefined, broker: server.pid() }, writeCalls);
    const floorMs = args.cluster ? Number.NaN : await measureFloor(orders);
    const floorWritesByProcess = floorWritesSince();
    const floorDelta = counterDelta(floorBefore, await counters());
    // The floor does exactly the saga's steps: 3 per completed order, 5 per compensated one
    // (reserve, charge, the failing ship, refund, release).
    let floorSteps = 0;
    for (let i = 0; i < orders.length; i++) floorSteps += orders.at(i)?.failShipping ? 5 : 3;
    return {
      latenciesMs,
      tally,
      wallMs,
      maxRssMb,
      floorMs,
      floor: backend === 'redis' ? 'hand-written Redis Streams saga' : 'hand-written JetStream saga',
      ours: { delta: ours, steps: tally.steps },
      ...(args.cluster ? {} : { floorCost: { delta: floorDelta, steps: floorSteps } }),
      cpuByProcess,
      writesByProcess,
      ...(args.cluster ? {} : { floorWritesByProcess }),
      observersBehindAtEnd,
      ...(args.workersInOrchestrator ? { localDispatched: localAfter - localBefore } : {}),
    };
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    await adapters.close();
    await server.stop();
    await starterTracing?.shutdown();
  }
}

/** Each count divided by `steps`, to two decimals. */
function perStepEach(counts: Readonly<Record<string, number>>, steps: number): Record<string, number> {
  return Object.fromEntries(
    Object.entries(counts).map(([name, n]) => [name, Number((n / steps).toFixed(2))]),
  );
}

function perStep(cost: BrokerCost | undefined): { commands?: number; bytes?: number } {
  if (!cost || cost.steps === 0) return {};
  return {
    commands: Number((cost.delta.commands / cost.steps).toFixed(2)),
    bytes: Math.round(cost.delta.bytesIn / cost.steps),
  };
}

/** `off`, or the sampler and its ratio (what the JSON line reports). */
function tracingLabel(): string {
  const config = parseTracingConfig(process.env, { serviceName: 'bench' });
  return config === undefined ? 'off' : `${config.sampler}:${config.samplerRatio}`;
}

/** The JSON line of one measured run (SPEC §8), and the problems its verification found. */
function reportOf(args: BenchArgs, measured: Measured) {
  const { latenciesMs, tally, wallMs, maxRssMb, floorMs, floor } = measured;
  const latencies = Array.from(latenciesMs).sort((a, b) => a - b);
  const workflowsPerSec = Math.round((args.n / wallMs) * 1000);
  const floorWorkflowsPerSec = Math.round((args.n / floorMs) * 1000);
  const ours = perStep(measured.ours);
  const theirs = perStep(measured.floorCost);
  const unit = args.backend === 'nats' ? 'Messages' : 'Commands';
  return {
    backend: args.backend,
    mode: args.closed ? 'closed' : 'open',
    n: args.n,
    failRate: args.failRate,
    concurrency: args.concurrency,
    ...(args.backend === 'redis' ? { partitions: args.partitions } : {}),
    ...(args.backend === 'memory' ? {} : { workerManagers: args.workerManagers }),
    ...(args.workersInOrchestrator ? { workersInOrchestrator: true } : {}),
    ...(args.cluster ? { cluster: true } : {}),
    ...(args.observers.length > 0 ? { observers: args.observers } : {}),
    ...(args.encrypt ? { encrypted: true } : {}),
    ...(args.warmup > 0 ? { warmup: args.warmup } : {}),
    tracing: tracingLabel(),
    completed: tally.completed,
    compensated: tally.compensated,
    other: args.n - tally.completed - tally.compensated,
    wallMs: Math.round(wallMs),
    workflowsPerSec,
    stepsPerSec: Math.round((tally.steps / wallMs) * 1000),
    p50Ms: percentile(latencies, 50),
    p95Ms: percentile(latencies, 95),
    p99Ms: percentile(latencies, 99),
    maxMs: percentile(latencies, 100),
    maxRssMb,
    ...(measured.loopStallMaxMs === undefined ? {} : { loopStallMaxMs: measured.loopStallMaxMs }),
    ...(measured.cpuMs === undefined ? {} : { cpuMs: Math.round(measured.cpuMs) }),
    ...(measured.cpuByProcess ? { cpuMsByProcess: measured.cpuByProcess } : {}),
    ...(measured.writesByProcess && tally.steps > 0
      ? { writesPerStepByProcess: perStepEach(measured.writesByProcess, tally.steps) }
      : {}),
    ...(measured.floorWritesByProcess && measured.floorCost && measured.floorCost.steps > 0
      ? { floorWritesPerStepByProcess: perStepEach(measured.floorWritesByProcess, measured.floorCost.steps) }
      : {}),
    ...(measured.observersBehindAtEnd && args.observers.length > 0
      ? { observersBehindAtEnd: measured.observersBehindAtEnd }
      : {}),
    ...(measured.localDispatched === undefined
      ? {}
      : { stepsWithoutBus: Number((measured.localDispatched / tally.steps).toFixed(3)) }),
    floor,
    floorWorkflowsPerSec: Number.isFinite(floorWorkflowsPerSec) ? floorWorkflowsPerSec : null,
    ratioToFloor: Number.isFinite(floorWorkflowsPerSec)
      ? Number((workflowsPerSec / floorWorkflowsPerSec).toFixed(4))
      : null,
    ...(ours.commands === undefined
      ? {}
      : {
          [`broker${unit}PerStep`]: ours.commands,
          brokerBytesPerStep: ours.bytes,
          [`floor${unit}PerStep`]: theirs.commands,
          floorBytesPerStep: theirs.bytes,
        }),
    ...(measured.ours && Object.keys(measured.ours.delta.byCommand).length > 0
      ? { brokerCommands: measured.ours.delta.byCommand }
      : {}),
    verified: tally.problems.length === 0,
  };
}

type Report = ReturnType<typeof reportOf>;

/** The middle report by ratio to its floor (by throughput when no floor was measured). */
function medianReport(reports: readonly Report[]): Report {
  const key = (r: Report): number => r.ratioToFloor ?? r.workflowsPerSec;
  const sorted = [...reports].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)] as Report;
}

async function main(): Promise<void> {
  const args = parse();
  // Made on demand: the bench holds no list of orders that grows with N.
  const orders = makeOrderBook(args.n, args.failRate, args.seed);
  const warm = makeOrderBook(args.warmup, args.failRate, args.seed + 1, 'w');
  const reports: Report[] = [];
  const problems: string[] = [];
  // Each run measures its floor right after it, so a run and its floor share the machine's mood.
  for (let i = 0; i < args.repeat; i++) {
    const measured =
      args.backend === 'memory'
        ? await runEmbeddedBench(args, orders, warm)
        : await runDistributedBench(args, orders, warm);
    reports.push(reportOf(args, measured));
    problems.push(...measured.tally.problems.slice(0, 20));
  }
  const chosen = medianReport(reports);
  const line =
    args.repeat === 1
      ? chosen
      : {
          ...chosen,
          repeat: args.repeat,
          runs: reports.map((r) => ({
            workflowsPerSec: r.workflowsPerSec,
            floorWorkflowsPerSec: r.floorWorkflowsPerSec,
            ratioToFloor: r.ratioToFloor,
            p99Ms: r.p99Ms,
          })),
          verified: reports.every((r) => r.verified),
        };
  if (problems.length > 0) {
    console.error(`bench: runs failed verification:`);
    for (const problem of problems.slice(0, 20)) console.error(`  ${problem}`);
    process.exitCode = 1;
  }
  if (!args.json) {
    console.log(
      `${line.n} workflows on ${line.backend} (${line.mode} loop, C=${line.concurrency}): ${line.workflowsPerSec} workflows/s, ` +
        `p50 ${line.p50Ms} ms, p99 ${line.p99Ms} ms, max RSS ${line.maxRssMb} MB; ` +
        `floor (${line.floor}) ${line.floorWorkflowsPerSec ?? '-'} workflows/s, ratio ${line.ratioToFloor ?? '-'}` +
        (args.repeat === 1 ? '' : ` (median of ${args.repeat} runs by ratio)`),
    );
  }
  console.log(JSON.stringify(line));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
