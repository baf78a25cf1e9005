/**
 * The event-monitor service: one replica of the `event-monitor` consumer group on the lifecycle
 * events (replicas compete for them and share the timelines, marks and registry in the backend).
 * Serves EventMonitorService (timelines, stuck runs, dead letters, workers, an event stream) with
 * health and reflection on GRPC_PORT, and the dashboard, /healthz, /readyz and /stats on HTTP_PORT
 * (the dashboard's actions go to the orchestrator at MULTIAGENTS_ORCHESTRATOR_ADDRESS). SIGTERM
 * drains: the API first (health NOT_SERVING, streams ended), then the consumer (events in flight
 * acknowledged), then exit.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import {
  describeStartupFailure,
  listenOrExplain,
  openBackendWhenReachable,
  startWhenBrokerAllows,
} from '@multiagents/backends';
import { connect, type MultiAgentsClient } from '@multiagents/client';
import { ControlPlaneServer, deferredApi, type EventMonitorApi } from '@multiagents/grpc-server';
import { DEFAULT_EVENT_MONITOR_OPTIONS, EventMonitor } from '@multiagents/monitor';
import { createPinoLogger, HealthServer } from '@multiagents/telemetry';
import { loadConfig, type EventMonitorConfig } from './config';
import { Dashboard } from './dashboard/dashboard';
import { createDashboardAuth, type DashboardAuthHandle } from './dashboard/dashboard-auth';

/** Stops the process with every problem on its own line (exit 78 for configuration problems). */
function fail(err: unknown): never {
  const { text, exitCode } = describeStartupFailure('event-monitor', err);
  process.stderr.write(text);
  process.exit(exitCode);
}

async function main(): Promise<void> {
  let config: EventMonitorConfig;
  try {
    config = loadConfig();
  } catch (err) {
    fail(err);
  }
  const logger = createPinoLogger({ level: config.logLevel, base: { service: 'event-monitor' } });
  const health = new HealthServer();
  // Up (not ready) before the broker is: a broker that is down delays readiness, not the probes.
  const httpPort = config.httpPort;
  const port = await listenOrExplain(() => health.listen(httpPort, config.httpHost), httpPort, 'HTTP_PORT');
  logger.info({ port }, 'health endpoint listening');

  const monitorApi = deferredApi<EventMonitorApi>('the event-monitor is starting: waiting for its broker');
  const grpc = new ControlPlaneServer({
    eventMonitor: monitorApi.api,
    logger,
    host: config.grpcHost,
    port: config.grpcPort,
    reflection: config.security.reflection,
    ...(config.security.tls === undefined ? {} : { tls: config.security.tls }),
    ...(config.security.auth === undefined ? {} : { auth: config.security.auth }),
    maxMessageBytes: config.grpcMaxMessageBytes,
  });

  let stopping = false;
  let closeEngine: () => Promise<void> = async () => undefined;
  // Set once the broker is reachable; shutdown and /stats may run before.
  const ui: { dashboard?: Dashboard; auth?: DashboardAuthHandle } = {};
  let orchestrator: MultiAgentsClient | undefined;
  const starting = new AbortController();
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    starting.abort();
    logger.info({ signal }, 'draining');
    health.setReady(false);
    ui.dashboard?.close();
    ui.auth?.close();
    orchestrator?.close();
    void grpc
      .close()
      .then(() => closeEngine())
      .then(() => health.close())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));

  const { port: grpcPort } = await listenOrExplain(
    () => grpc.start({ serving: false }),
    config.grpcPort,
    'GRPC_PORT',
  );
  // A broker that is down at start delays readiness, with one log line per try.
  const backend = await openBackendWhenReachable(config, { logger, signal: starting.signal });
  if (backend === undefined) return;
  // Not ready while its broker is away (a replica that lost it leaves the rotation).
  health.setBrokerCheck(() => backend.connected());
  const newMonitor = (): EventMonitor =>
    new EventMonitor({
      bus: backend.bus,
      runs: backend.runs,
      definitions: backend.definitions,
      registry: backend.registry,
      timelines: backend.timelines,
      consumer: `event-monitor-${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
      logger,
      stuckThresholdsMs: config.stuckThresholdsMs,
      ...(config.stuckThresholdMs === undefined ? {} : { stuckThresholdMs: config.stuckThresholdMs }),
      ...(config.stuckScanIntervalMs === undefined
        ? {}
        : { stuckScanIntervalMs: config.stuckScanIntervalMs }),
      ...(config.timelineRetentionMs === undefined
        ? {}
        : { timelineRetentionMs: config.timelineRetentionMs }),
      ...(config.workersPollIntervalMs === undefined
        ? {}
        : { workersPollIntervalMs: config.workersPollIntervalMs }),
      subscribe: {
        ...(config.visibilityTimeoutMs === undefined
          ? {}
          : { visibilityTimeoutMs: config.visibilityTimeoutMs }),
        ...(config.maxDeliveries === undefined ? {} : { maxDeliveries: config.maxDeliveries }),
      },
    });
  let monitor = newMonitor();
  health.setStats(() => {
    const { rejectedByReason, ...stats } = monitor.stats;
    return {
      ...stats,
      ...Object.fromEntries(Object.entries(rejectedByReason).map(([reason, n]) => [`rejected_${reason}`, n])),
      ...backend.bus.counters?.(),
      dashboardStreams: ui.dashboard?.openStreams ?? 0,
      dashboardFollowing: ui.dashboard?.following === true ? 1 : 0,
    };
  });
  closeEngine = async () => {
    await monitor.close();
    await backend.close();
  };
  // A start the broker refuses (a subscription timing out while a cluster elects its leaders) is
  // tried again on a new monitor, after the failed one has undone its part.
  let tries = 0;
  const started = await startWhenBrokerAllows(
    'subscribing to the lifecycle events',
    async () => {
      if (tries++ > 0) {
        await monitor.close();
        monitor = newMonitor();
      }
      await monitor.start();
    },
    { logger, signal: starting.signal },
  );
  if (!started) return;
  monitorApi.bind(monitor);
  // With authentication on, browsers log in with a token and act with it; with mTLS only there is
  // no token a browser could present, so the dashboard stays off.
  const auth = config.security.auth;
  if (auth !== undefined && auth.jwt !== undefined) {
    const handle = await createDashboardAuth(auth, config.orchestratorAddress, config.orchestratorTls);
    ui.auth = handle;
  }
  if (auth === undefined && config.orchestratorAddress !== undefined) {
    orchestrator = connect(config.orchestratorAddress, {
      ...(config.orchestratorToken === undefined ? {} : { token: config.orchestratorToken }),
      ...(config.orchestratorTls === undefined ? {} : { tls: config.orchestratorTls }),
    });
  }
  const dashboard = new Dashboard({
    runs: backend.runs,
    monitor,
    stuckThresholdMs: config.stuckThresholdMs ?? DEFAULT_EVENT_MONITOR_OPTIONS.stuckThresholdMs,
    logger: logger.child({ component: 'dashboard' }),
    ...(orchestrator === undefined ? {} : { actions: orchestrator }),
    ...(ui.auth === undefined ? {} : { auth: ui.auth.auth }),
    ...(config.jaegerUrl === undefined ? {} : { jaegerUrl: config.jaegerUrl }),
  });
  ui.dashboard = dashboard;
  dashboard.start();
  if (auth === undefined || ui.auth !== undefined)
    health.setFallback((req, res) => dashboard.handle(req, res));
  else
    logger.warn(
      {},
      'dashboard off: authentication is by client certificate only, which a browser cannot present',
    );
  if (stopping) return;
  grpc.setServing(true);
  health.setReady(true);
  logger.info(
    { backend: config.backend, grpcPort, httpPort: port, dashboard: `http://${config.httpHost}:${port}/` },
    'event-monitor started',
  );
}

main().catch(fail);
