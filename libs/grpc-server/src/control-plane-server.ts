import {
  Server,
  ServerCredentials,
  status,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerInterceptor,
  type ServerUnaryCall,
  type sendUnaryData,
  type ServerWritableStream,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { ErrorCode, hasErrorCode, MAX_TIMER_MS, ValidationError } from '@multiagents/contracts';
import { silentLogger, type Logger } from '@multiagents/core';
import {
  EventMonitorServiceService,
  OrchestratorServiceService,
  WorkerManagerServiceService,
} from '@multiagents/proto';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { authorizationInterceptor } from './authorization-interceptor';
import { Authorizer, checkAuthOptions, type AuthOptions } from './authorizer';
import { MalformedRequest, tolerantService } from './call-handlers';
import { EventMonitorService, type EventMonitorApi } from './event-monitor-service';
import { OrchestratorService, type OrchestratorApi } from './orchestrator-service';
import { findProtoDir, loadReflectionPackage } from './proto-files';
import { WatchedTlsFiles, type ServerTlsOptions } from './tls-files';
import { WorkerManagerService, type WorkerManagerApi } from './worker-manager-service';
import { DEFAULT_MAX_JSON_BYTES, DEFAULT_MAX_JSON_DEPTH } from '@multiagents/contracts';

/** Fully qualified name of the orchestrator's gRPC service (also its health-check name). */
export const ORCHESTRATOR_SERVICE_NAME = 'multiagents.v1.OrchestratorService';
/** Fully qualified name of the worker-manager's gRPC service (also its health-check name). */
export const WORKER_MANAGER_SERVICE_NAME = 'multiagents.v1.WorkerManagerService';

/** Fully qualified name of the event-monitor's gRPC service (also its health-check name). */
export const EVENT_MONITOR_SERVICE_NAME = 'multiagents.v1.EventMonitorService';

/** The standard health service's name (grpc.health.v1). */
const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

/** Options of {@link ControlPlaneServer}. */
export interface ControlPlaneServerOptions {
  /**
   * Served as OrchestratorService; any backend's orchestrator. Absent on a standalone
   * worker-manager: OrchestratorService is then not registered (its calls get UNIMPLEMENTED).
   */
  readonly orchestrator?: OrchestratorApi;
  /**
   * Served as WorkerManagerService when this process hosts one (the embedded mode, an orchestrator
   * that hosts workers, or the standalone worker-manager). At least one of the two is required.
   */
  readonly workerManager?: WorkerManagerApi;
  /** Served as EventMonitorService (the event-monitor service). */
  readonly eventMonitor?: EventMonitorApi;
  /**
   * Runs once when a Drain call begins, after health turned NOT_SERVING (the standalone
   * worker-manager turns its HTTP readiness off there too).
   */
  readonly onDrain?: () => void;
  readonly logger?: Logger;
  /**
   * Interface to bind; default 127.0.0.1, so an unauthenticated API is not reachable from other
   * machines unless an operator says so.
   */
  readonly host?: string;
  /** TLS (and, with a client CA, mutual TLS); plaintext when absent. Files are re-read on change. */
  readonly tls?: ServerTlsOptions;
  /**
   * Authentication and roles on every method but health (SPEC §6). When absent the API is open
   * to anyone who can reach the port, and start() logs so loudly.
   */
  readonly auth?: AuthOptions;
  /** Serve gRPC server reflection (readers only, when authentication is on). Default true. */
  readonly reflection?: boolean;
  /** Largest start input, signal payload or step output accepted in a request (bytes of JSON). */
  readonly maxJsonBytes?: number;
  /** Deepest start input, signal payload or step output accepted in a request. */
  readonly maxJsonDepth?: number;
  /** Port to bind; 0 picks a free one (read it from `start()`'s answer). */
  readonly port: number;
  /** Largest request or response message; a larger request is refused with RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes?: number;
  /** Server-side limit on a unary call, applied whatever deadline the client set (or none). */
  readonly maxCallMs?: number;
  /** Server-side limit on a WatchWorkflow stream; the client watches again to go on. */
  readonly maxWatchMs?: number;
  /**
   * How often a watched run is re-read, a safety net: changes other orchestrators write come at
   * once through `onRunMoved` (their lifecycle events), unless the events are off; 0: never.
   */
  readonly watchPollIntervalMs?: number;
  /** ListWorkflows page size when the request names none. */
  readonly defaultPageSize?: number;
  /** ListWorkflows page sizes above this are capped to it. */
  readonly maxPageSize?: number;
  /** How long health reports NOT_SERVING before the listener stops (load balancers notice). */
  readonly drainDelayMs?: number;
  /** How long close() waits for calls in flight before cutting them. */
  readonly shutdownTimeoutMs?: number;
  /** The proto/ folder for server reflection; found by walking up from this file when absent. */
  readonly protoDir?: string;
}

type Defaulted = Required<
  Pick<
    ControlPlaneServerOptions,
    | 'host'
    | 'maxMessageBytes'
    | 'maxCallMs'
    | 'maxWatchMs'
    | 'watchPollIntervalMs'
    | 'defaultPageSize'
    | 'maxPageSize'
    | 'drainDelayMs'
    | 'shutdownTimeoutMs'
    | 'reflection'
    | 'maxJsonBytes'
    | 'maxJsonDepth'
  >
>;

/** Defaults of {@link ControlPlaneServerOptions}. */
export const DEFAULT_CONTROL_PLANE_SERVER_OPTIONS: Readonly<Defaulted> = Object.freeze({
  host: '127.0.0.1',
  reflection: true,
  maxJsonBytes: DEFAULT_MAX_JSON_BYTES,
  maxJsonDepth: DEFAULT_MAX_JSON_DEPTH,
  maxMessageBytes: 4 * 1024 * 1024,
  maxCallMs: 30_000,
  maxWatchMs: 3_600_000,
  watchPollIntervalMs: 1_000,
  defaultPageSize: 50,
  maxPageSize: 500,
  drainDelayMs: 0,
  shutdownTimeoutMs: 10_000,
});

type Resolved = ControlPlaneServerOptions & Defaulted;

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

function resolveOptions(options: ControlPlaneServerOptions): Resolved {
  // Options set to undefined take the default too (config modules pass unset variables so).
  const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
  const resolved = { ...DEFAULT_CONTROL_PLANE_SERVER_OPTIONS, ...given } as Resolved;
  const problems: string[] = [];
  for (const name of ['orchestrator', 'workerManager', 'eventMonitor'] as const) {
    const value: unknown = options[name];
    if (value !== undefined && (typeof value !== 'object' || value === null)) {
      problems.push(`${name} must be an object (got ${value === null ? 'null' : typeof value})`);
    }
  }
  if (
    options.orchestrator === undefined &&
    options.workerManager === undefined &&
    options.eventMonitor === undefined
  ) {
    problems.push('orchestrator, workerManager or eventMonitor is required: a server with nothing to serve');
  }
  if (!Number.isInteger(resolved.port) || resolved.port < 0 || resolved.port > 65_535) {
    problems.push(`port must be an integer from 0 to 65535 (got ${String(resolved.port)})`);
  }
  const positive: [string, number][] = [
    ['maxMessageBytes', resolved.maxMessageBytes],
    ['maxCallMs', resolved.maxCallMs],
    ['maxWatchMs', resolved.maxWatchMs],
    ['defaultPageSize', resolved.defaultPageSize],
    ['maxPageSize', resolved.maxPageSize],
    ['shutdownTimeoutMs', resolved.shutdownTimeoutMs],
    ['maxJsonBytes', resolved.maxJsonBytes],
    ['maxJsonDepth', resolved.maxJsonDepth],
  ];
  for (const [name, value] of positive) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      problems.push(`${name} must be a positive integer (got ${String(value)})`);
    }
  }
  for (const [name, value] of [
    ['watchPollIntervalMs', resolved.watchPollIntervalMs],
    ['drainDelayMs', resolved.drainDelayMs],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 0) {
      problems.push(`${name} must be a non-negative integer (got ${String(value)})`);
    }
  }
  if (resolved.defaultPageSize > resolved.maxPageSize) problems.push('defaultPageSize is above maxPageSize');
  if (typeof resolved.host !== 'string' || resolved.host.length === 0)
    problems.push('host must be non-empty');
  // Bounded by what one process can hold and the wire can carry: a 1 GiB message, a timer of ~24.8 days.
  if (resolved.maxMessageBytes > 1024 * 1024 * 1024) problems.push('maxMessageBytes must be at most 1 GiB');
  if (resolved.maxJsonDepth > 1_000) problems.push('maxJsonDepth must be at most 1000');
  for (const [name, value] of [
    ['maxCallMs', resolved.maxCallMs],
    ['maxWatchMs', resolved.maxWatchMs],
    ['shutdownTimeoutMs', resolved.shutdownTimeoutMs],
    ['drainDelayMs', resolved.drainDelayMs],
    ['watchPollIntervalMs', resolved.watchPollIntervalMs],
  ] as const) {
    if (value > MAX_TIMER_MS)
      problems.push(`${name} must be at most ${MAX_TIMER_MS} (what setTimeout can wait)`);
  }
  if (options.auth !== undefined) problems.push(...checkAuthOptions(options.auth));
  if (options.auth?.certificateRoles !== undefined && options.tls?.clientCaFile === undefined) {
    problems.push('certificate roles need mutual TLS: set a client CA file');
  }
  if (problems.length > 0) throw new ValidationError('invalid ControlPlaneServer options', problems);
  return resolved;
}

type ServerState = 'new' | 'starting' | 'serving' | 'closing' | 'closed';

/**
 * The control plane over gRPC (SPEC §6): OrchestratorService when an orchestrator is given,
 * WorkerManagerService when a worker-manager is hosted here, the standard grpc.health.v1 service
 * and server reflection (which lists only the services registered). Every call has a deadline (the
 * client's, capped by the server's limit), messages have a maximum size, errors map to gRPC codes
 * by their MultiAgents code. Health reports SERVING only once started, and NOT_SERVING from the
 * moment a shutdown (or a worker-manager drain) begins.
 *
 * @example
 * const server = new ControlPlaneServer({ orchestrator, workerManager, port: 50051, logger });
 * const { port } = await server.start();
 * process.once('SIGTERM', () => void server.close());
 *
 * // A standalone worker-manager: WorkerManagerService, health and reflection only.
 * const server = new ControlPlaneServer({ workerManager: manager, port: 50052, logger });
 */
export class ControlPlaneServer {
  private readonly options: Resolved;
  private readonly logger: Logger;
  private readonly health: HealthImplementation;
  private readonly server: Server;
  private readonly orchestratorService: OrchestratorService | undefined;
  private readonly workerManagerService: WorkerManagerService | undefined;
  private readonly eventMonitorService: EventMonitorService | undefined;
  private readonly authorizer: Authorizer | undefined;
  private readonly tlsFiles: WatchedTlsFiles | undefined;
  /** Open grpc.health.v1 Watch streams: ended at shutdown, or graceful shutdown would wait on them. */
  private readonly healthWatches = new Set<ServerWritableStream<unknown, unknown>>();
  private state: ServerState = 'new';
  private closing: Promise<void> | undefined;
  private boundPort: number | undefined;

  constructor(options: ControlPlaneServerOptions) {
    this.options = resolveOptions(options);
    this.logger = (options.logger ?? silentLogger).child({ component: 'grpc' });
    // Everything starts NOT_SERVING: a health check before start() completes must not pass.
    this.health = new HealthImplementation({
      '': 'NOT_SERVING',
      ...(options.orchestrator ? { [ORCHESTRATOR_SERVICE_NAME]: 'NOT_SERVING' } : {}),
      ...(options.workerManager ? { [WORKER_MANAGER_SERVICE_NAME]: 'NOT_SERVING' } : {}),
      ...(options.eventMonitor ? { [EVENT_MONITOR_SERVICE_NAME]: 'NOT_SERVING' } : {}),
    });
    this.tlsFiles = options.tls === undefined ? undefined : new WatchedTlsFiles(options.tls, this.logger);
    this.authorizer = options.auth === undefined ? undefined : new Authorizer(options.auth);
    const orchestrator = options.orchestrator;
    const eventMonitor = options.eventMonitor;
    const interceptors: ServerInterceptor[] =
      this.authorizer === undefined
        ? []
        : [
            authorizationInterceptor(
              this.authorizer,
              this.logger,
              orchestrator !== undefined
                ? (txId) => orchestrator.getRun(txId).then((run) => run.workflowId, unknownRunOnly)
                : eventMonitor !== undefined
                  ? (txId) => eventMonitor.workflowOf(txId).catch(unknownRunOnly)
                  : undefined,
            ),
          ];
    this.server = new Server({
      'grpc.max_receive_message_length': this.options.maxMessageBytes,
      'grpc.max_send_message_length': this.options.maxMessageBytes,
      interceptors,
    });
    const context = {
      logger: this.logger,
      maxCallMs: this.options.maxCallMs,
      jsonBounds: { maxBytes: this.options.maxJsonBytes, maxDepth: this.options.maxJsonDepth },
    };
    if (options.orchestrator) {
      this.orchestratorService = new OrchestratorService(options.orchestrator, {
        ...context,
        maxWatchMs: this.options.maxWatchMs,
        watchPollIntervalMs: this.options.watchPollIntervalMs,
        defaultPageSize: this.options.defaultPageSize,
        maxPageSize: this.options.maxPageSize,
      });
      this.server.addService(
        tolerantService(OrchestratorServiceService),
        this.orchestratorService.implementation,
      );
    }
    if (options.workerManager) {
      const onDrain = options.onDrain;
      this.workerManagerService = new WorkerManagerService(options.workerManager, context, () => {
        this.logger.info({}, 'worker-manager draining: health NOT_SERVING');
        this.health.setStatus(WORKER_MANAGER_SERVICE_NAME, 'NOT_SERVING');
        // In this process the worker-manager is what runs the steps: without it the whole
        // process is no longer doing its job.
        this.health.setStatus('', 'NOT_SERVING');
        if (onDrain) {
          try {
            onDrain();
          } catch (err) {
            this.logger.warn({ err }, 'onDrain threw; the drain goes on');
          }
        }
      });
      this.server.addService(
        tolerantService(WorkerManagerServiceService),
        this.workerManagerService.implementation,
      );
    }
    if (options.eventMonitor) {
      this.eventMonitorService = new EventMonitorService(options.eventMonitor, {
        ...context,
        maxWatchMs: this.options.maxWatchMs,
      });
      this.server.addService(
        tolerantService(EventMonitorServiceService),
        this.eventMonitorService.implementation,
      );
    }
    this.addHealthService();
  }

  /**
   * Binds, starts serving, and turns health SERVING. Resolves with the bound port. With
   * `{ serving: false }` health stays NOT_SERVING until `setServing(true)`: a service binds its
   * port first (a taken port fails before it takes any work) and reports SERVING only once its
   * backend is connected.
   */
  async start(options: { readonly serving?: boolean } = {}): Promise<{ port: number; address: string }> {
    if (this.state !== 'new') throw new Error(`ControlPlaneServer cannot start: it is ${this.state}`);
    this.state = 'starting';
    if (this.options.reflection) {
      const protoDir = this.options.protoDir ?? findProtoDir();
      new ReflectionService(loadReflectionPackage(protoDir), {
        services: this.servedServiceNames(),
      }).addToServer(this.server);
    }
    await this.authorizer?.start();
    const credentials = this.tlsFiles?.serverCredentials() ?? ServerCredentials.createInsecure();
    const port = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`${this.options.host}:${this.options.port}`, credentials, (err, bound) =>
        err ? reject(err) : resolve(bound),
      );
    });
    this.warnIfOpen(port);
    this.boundPort = port;
    this.state = 'serving';
    this.setServing(options.serving !== false);
    const address = `${this.options.host === '0.0.0.0' ? '127.0.0.1' : this.options.host}:${port}`;
    this.logger.info(
      {
        port,
        host: this.options.host,
        tls: this.tlsFiles === undefined ? 'off' : this.tlsFiles.mutual ? 'mutual' : 'server',
        auth: this.authorizer === undefined ? 'off' : 'on',
        reflection: this.options.reflection,
      },
      'gRPC control plane listening',
    );
    return { port, address };
  }

  /** Says loudly what an open or plaintext API means (SPEC §10). */
  private warnIfOpen(port: number): void {
    const where = `${this.options.host}:${port}`;
    if (this.authorizer === undefined) {
      const reachable = !LOOPBACK.has(this.options.host);
      this.logger.warn(
        { host: this.options.host, port, security: 'open' },
        `AUTHENTICATION IS OFF: anyone who can reach ${where} can register workflows, read every run's input, ` +
          `start, signal and cancel runs and drain workers${reachable ? ' — and this address is reachable from other machines' : ''}. ` +
          'Configure authentication (see the Security section of the README).',
      );
    } else if (this.tlsFiles === undefined) {
      this.logger.warn(
        { host: this.options.host, port, security: 'plaintext' },
        `TLS IS OFF: bearer tokens and payloads to ${where} travel in plaintext.`,
      );
    }
  }

  /** The bound port, once started. */
  get port(): number | undefined {
    return this.boundPort;
  }

  /** WatchWorkflow streams open now (0 without an orchestrator). */
  get openWatches(): number {
    return (this.orchestratorService?.openWatches ?? 0) + (this.eventMonitorService?.openWatches ?? 0);
  }

  /** Listeners the watch streams hold (0 once every stream has ended, or without an orchestrator). */
  get watchListeners(): number {
    return this.orchestratorService?.hub.size ?? 0;
  }

  /** True once a Drain call has begun on the hosted worker-manager. */
  get draining(): boolean {
    return this.workerManagerService?.isDraining === true;
  }

  /**
   * Health of every service: SERVING or NOT_SERVING (for example while the backend reconnects).
   * A drained worker-manager stays NOT_SERVING, and nothing is SERVING once closing.
   */
  setServing(serving: boolean): void {
    if (this.state === 'closed') return;
    const serve = serving && this.state === 'serving';
    const status: ServingStatus = serve ? 'SERVING' : 'NOT_SERVING';
    const drained = this.workerManagerService?.isDraining === true;
    this.health.setStatus('', drained ? 'NOT_SERVING' : status);
    if (this.orchestratorService) this.health.setStatus(ORCHESTRATOR_SERVICE_NAME, status);
    if (this.eventMonitorService) this.health.setStatus(EVENT_MONITOR_SERVICE_NAME, status);
    if (this.workerManagerService) {
      this.health.setStatus(WORKER_MANAGER_SERVICE_NAME, drained ? 'NOT_SERVING' : status);
    }
  }

  /**
   * Graceful shutdown: health turns NOT_SERVING, then after `drainDelayMs` WatchWorkflow streams
   * end with UNAVAILABLE (clients watch again elsewhere), calls in flight get up to
   * `shutdownTimeoutMs` to finish, and whatever is left is cut. Idempotent. Does not close the
   * orchestrator or the worker-manager, which the caller owns.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** The fully qualified names of the services this server registers (what reflection lists). */
  private servedServiceNames(): string[] {
    return [
      ...(this.orchestratorService ? [ORCHESTRATOR_SERVICE_NAME] : []),
      ...(this.workerManagerService ? [WORKER_MANAGER_SERVICE_NAME] : []),
      ...(this.eventMonitorService ? [EVENT_MONITOR_SERVICE_NAME] : []),
      HEALTH_SERVICE_NAME,
    ];
  }

  /**
   * grpc-health-check's implementation, registered through a tiny proxy that keeps track of its
   * Watch streams (it has no way to end them itself).
   */
  private addHealthService(): void {
    this.health.addToServer({
      addService: (service, implementation: UntypedServiceImplementation) => {
        const watch = implementation['watch'] as handleServerStreamingCall<unknown, unknown>;
        const check = implementation['check'] as handleUnaryCall<unknown, unknown>;
        // Malformed bytes are INVALID_ARGUMENT here too, never grpc-js's INTERNAL.
        this.server.addService(tolerantService(service), {
          ...implementation,
          check: (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
            if (call.request instanceof MalformedRequest) callback(call.request.toStatus());
            else check(call, callback);
          },
          watch: (call: ServerWritableStream<unknown, unknown>) => {
            if (call.request instanceof MalformedRequest) {
              call.emit('error', call.request.toStatus());
              return;
            }
            this.healthWatches.add(call);
            const forget = (): void => void this.healthWatches.delete(call);
            call.once('cancelled', forget);
            call.once('finish', forget);
            const { service } = call.request as { service?: unknown };
            if (service !== '' && !this.servedServiceNames().includes(service as string)) {
              // As the health protocol says: SERVICE_UNKNOWN, and the call stays open. Not through
              // grpc-health-check, which keeps an entry per name asked for, for good (anyone may
              // watch: a stream of random names would grow it without end).
              call.write({ status: 'SERVICE_UNKNOWN' });
              return;
            }
            watch(call);
          },
        });
      },
    });
  }

  private async shutdown(): Promise<void> {
    this.authorizer?.close();
    this.tlsFiles?.close();
    const wasServing = this.state === 'serving';
    this.state = 'closing';
    this.setServing(false);
    if (wasServing && this.options.drainDelayMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, this.options.drainDelayMs));
    }
    this.orchestratorService?.endWatches({
      code: status.UNAVAILABLE,
      details: 'server shutting down; watch again',
    });
    this.eventMonitorService?.endWatches({
      code: status.UNAVAILABLE,
      details: 'server shutting down; watch again',
    });
    // Health watchers have seen NOT_SERVING by now; their streams would otherwise never end.
    for (const call of [...this.healthWatches]) call.end();
    this.healthWatches.clear();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.logger.warn(
          { shutdownTimeoutMs: this.options.shutdownTimeoutMs },
          'calls still in flight after the shutdown timeout: cutting them',
        );
        this.server.forceShutdown();
        resolve();
      }, this.options.shutdownTimeoutMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.state = 'closed';
    this.logger.info({}, 'gRPC control plane closed');
  }
}

/**
 * A run lookup for authorization that failed: an unknown run is no workflow (the handler answers
 * NOT_FOUND, to a caller of any scope alike); any other failure (the store unreachable) refuses
 * the call with it, never lets it through unchecked.
 */
function unknownRunOnly(err: unknown): undefined {
  if (hasErrorCode(err, ErrorCode.NotFound)) return undefined;
  throw err;
}
