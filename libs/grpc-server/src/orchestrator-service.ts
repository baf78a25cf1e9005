/**
 * The OrchestratorService handlers: request checks (every problem at once), domain calls on the
 * Orchestrator, mapping at the edge, and WatchWorkflow streams.
 */
import {
  status,
  type handleServerStreamingCall,
  type Metadata,
  type ServerWritableStream,
  type StatusObject,
} from '@grpc/grpc-js';
import { isTerminalRunState, SIGNAL_NAME_PATTERN, ValidationError, type Run } from '@multiagents/contracts';
import type { Logger, Orchestrator } from '@multiagents/core';
import type * as pb from '@multiagents/proto';
import { MalformedRequest, unaryCall, type HandlerContext } from './call-handlers';
import { streamBudget } from './stream-budget';
import { toGrpcStatus } from './grpc-error';
import {
  definitionFromProto,
  definitionSummaryToProto,
  definitionToProto,
  jsonFromBytes,
  runStateFromProto,
  runToProto,
} from './mappers';
import { MAX_ID_LENGTH, requireId } from './request-ids';
import { RunWatchHub } from './run-watch-hub';

/**
 * The Orchestrator methods the API serves (any backend's orchestrator has them; `onRunMoved`, which
 * lets a watch see other orchestrators' changes at once, is optional).
 */
export type OrchestratorApi = Partial<Pick<Orchestrator, 'onRunMoved'>> &
  Pick<
    Orchestrator,
    | 'registerWorkflow'
    | 'getDefinition'
    | 'listDefinitions'
    | 'startWorkflow'
    | 'getRun'
    | 'listRuns'
    | 'signal'
    | 'cancel'
    | 'retryStep'
    | 'skipStep'
    | 'resumeCompensation'
    | 'onRunChanged'
    | 'unhostedWorkers'
    | 'listWorkerManagers'
  >;

/** Settings of the OrchestratorService handlers (resolved by the server). */
export interface OrchestratorServiceSettings extends HandlerContext {
  readonly logger: Logger;
  /** Server-side limit on one WatchWorkflow stream. */
  readonly maxWatchMs: number;
  /** How often a watched run is re-read from the store (a safety net: see ControlPlaneServerOptions); 0: never. */
  readonly watchPollIntervalMs: number;
  readonly defaultPageSize: number;
  readonly maxPageSize: number;
}

const TRACE_HEADERS = ['traceparent', 'tracestate'] as const;

function requireSignalName(value: string, problems: string[]): void {
  requireId(value, 'name', problems);
  if (value.length > 0 && value.length <= MAX_ID_LENGTH && !SIGNAL_NAME_PATTERN.test(value)) {
    problems.push(`name must be a signal name matching ${SIGNAL_NAME_PATTERN.source}`);
  }
}

function throwIfAny(problems: readonly string[]): void {
  if (problems.length > 0) throw new ValidationError('invalid request', problems);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** W3C trace context from the call's metadata, so the run's trace continues the caller's. */
function traceHeadersOf(metadata: Metadata): Record<string, string> | undefined {
  const headers: Record<string, string> = {};
  for (const key of TRACE_HEADERS) {
    const value = metadata.get(key)[0];
    if (typeof value === 'string' && value.length > 0 && value.length <= 512) headers[key] = value;
  }
  return Object.keys(headers).length > 0 ? headers : undefined;
}

/** An open WatchWorkflow stream, as the server sees it at shutdown. */
interface OpenWatch {
  end(status: Partial<StatusObject> & { code: status; details: string }): void;
}

/**
 * OrchestratorService over an {@link OrchestratorApi}. `implementation` goes to
 * `server.addService`; `endWatches` ends every open stream (graceful shutdown).
 */
export class OrchestratorService {
  /** Fan-out of run changes to WatchWorkflow streams (exposed so tests can see it empty). */
  readonly hub: RunWatchHub;
  readonly implementation: pb.OrchestratorServiceServer;
  private readonly watches = new Set<OpenWatch>();

  constructor(
    private readonly orchestrator: OrchestratorApi,
    private readonly settings: OrchestratorServiceSettings,
  ) {
    this.hub = new RunWatchHub(orchestrator);
    const o = orchestrator;
    this.implementation = {
      registerWorkflow: unaryCall(settings, 'RegisterWorkflow', async (req: pb.RegisterWorkflowRequest) => {
        if (req.definition === undefined) throwIfAny(['definition is required']);
        let definition;
        try {
          definition = definitionFromProto(req.definition as pb.WorkflowDefinition);
        } catch (err) {
          // Branches nested so deep that mapping them overflows the stack: bad input, not a crash.
          if (err instanceof RangeError) throwIfAny(['definition is nested too deep']);
          throw err;
        }
        const created = await o.registerWorkflow(definition);
        // Registered either way; a worker nobody hosts now is worth saying (runs would wait for it).
        const unhosted = await o.unhostedWorkers(definition).catch(() => []);
        const warnings =
          unhosted.length === 0
            ? []
            : [
                `no live worker-manager hosts ${unhosted.join(', ')}: runs of ${definition.id} will wait for them (or fail with NO_WORKER where a step sets scheduleToStartTimeoutMs)`,
              ];
        return { created, id: definition.id, version: definition.version, warnings };
      }),

      listWorkerManagers: unaryCall(settings, 'ListWorkerManagers', async () => ({
        managers: (await o.listWorkerManagers()).map((m) => ({
          managerId: m.managerId,
          workers: [...m.workers],
          capacity: m.capacity,
          inFlight: m.inFlight,
          seenAtMs: m.seenAt,
          details: { ...(m.details ?? {}) },
        })),
      })),

      getWorkflowDefinition: unaryCall(
        settings,
        'GetWorkflowDefinition',
        async (req: pb.GetWorkflowDefinitionRequest) => {
          const problems: string[] = [];
          requireId(req.id, 'id', problems);
          throwIfAny(problems);
          const definition = await o.getDefinition(req.id, req.version === 0 ? undefined : req.version);
          return { definition: definitionToProto(definition) };
        },
      ),

      listWorkflowDefinitions: unaryCall(settings, 'ListWorkflowDefinitions', async () => ({
        definitions: (await o.listDefinitions()).map(definitionSummaryToProto),
      })),

      startWorkflow: unaryCall(settings, 'StartWorkflow', async (req: pb.StartWorkflowRequest, call) => {
        const problems: string[] = [];
        requireId(req.workflowId, 'workflow_id', problems);
        const input = jsonFromBytes(req.input, 'input', problems, {}, settings.jsonBounds);
        if (input !== undefined && !isPlainObject(input)) problems.push('input must be a JSON object');
        if (req.idempotencyKey !== undefined) requireId(req.idempotencyKey, 'idempotency_key', problems);
        throwIfAny(problems);
        const traceHeaders = traceHeadersOf(call.metadata);
        const started = await o.startWorkflow(req.workflowId, input, {
          ...(req.version === undefined || req.version === 0 ? {} : { version: req.version }),
          ...(req.idempotencyKey === undefined ? {} : { idempotencyKey: req.idempotencyKey }),
          ...(traceHeaders === undefined ? {} : { traceHeaders }),
        });
        return { txId: started.txId, created: started.created };
      }),

      getWorkflow: unaryCall(settings, 'GetWorkflow', async (req: pb.GetWorkflowRequest) => {
        const problems: string[] = [];
        requireId(req.txId, 'tx_id', problems);
        throwIfAny(problems);
        return { run: runToProto(await o.getRun(req.txId)) };
      }),

      listWorkflows: unaryCall(settings, 'ListWorkflows', async (req: pb.ListWorkflowsRequest) => {
        const problems: string[] = [];
        let state;
        try {
          state = req.state === undefined ? undefined : runStateFromProto(req.state);
        } catch (err) {
          if (err instanceof ValidationError) problems.push(...err.problems);
          else throw err;
        }
        if (req.workflowId !== undefined) requireId(req.workflowId, 'workflow_id', problems);
        for (const [field, value] of [
          ['created_after_ms', req.createdAfterMs],
          ['created_before_ms', req.createdBeforeMs],
        ] as const) {
          if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
            problems.push(`${field} must be a non-negative integer (ms since the epoch)`);
          }
        }
        if (
          req.createdAfterMs !== undefined &&
          req.createdBeforeMs !== undefined &&
          req.createdAfterMs > req.createdBeforeMs
        ) {
          problems.push('created_after_ms is after created_before_ms');
        }
        throwIfAny(problems);
        const pageSize =
          req.pageSize === 0 ? settings.defaultPageSize : Math.min(req.pageSize, settings.maxPageSize);
        const page = await o.listRuns(
          {
            ...(state === undefined ? {} : { state }),
            ...(req.workflowId === undefined ? {} : { workflowId: req.workflowId }),
            ...(req.createdAfterMs === undefined ? {} : { createdAfter: req.createdAfterMs }),
            ...(req.createdBeforeMs === undefined ? {} : { createdBefore: req.createdBeforeMs }),
          },
          pageSize,
          req.pageToken === '' ? undefined : req.pageToken,
        );
        return { runs: page.runs.map(runToProto), nextPageToken: page.nextCursor ?? '' };
      }),

      watchWorkflow: (call) => this.watch(call),

      signalWorkflow: unaryCall(settings, 'SignalWorkflow', async (req: pb.SignalWorkflowRequest) => {
        const problems: string[] = [];
        requireId(req.txId, 'tx_id', problems);
        requireSignalName(req.name, problems);
        const payload = jsonFromBytes(req.payload, 'payload', problems, null, settings.jsonBounds);
        throwIfAny(problems);
        return { run: runToProto(await o.signal(req.txId, req.name, payload)) };
      }),

      cancelWorkflow: unaryCall(settings, 'CancelWorkflow', async (req: pb.CancelWorkflowRequest) => {
        const problems: string[] = [];
        requireId(req.txId, 'tx_id', problems);
        if (req.reason !== undefined && req.reason.length > 1024) {
          problems.push('reason is longer than 1024 characters');
        }
        throwIfAny(problems);
        return { run: runToProto(await o.cancel(req.txId, req.reason)) };
      }),

      // Operator actions on failed and compensation_failed runs: NOT_FOUND for an unknown run or
      // step, FAILED_PRECONDITION for a run in another state or a step that is not the failed one.
      retryStep: unaryCall(settings, 'RetryStep', async (req: pb.RetryStepRequest) => {
        const problems: string[] = [];
        requireId(req.txId, 'tx_id', problems);
        requireId(req.step, 'step', problems);
        throwIfAny(problems);
        return { run: runToProto(await o.retryStep(req.txId, req.step)) };
      }),

      skipStep: unaryCall(settings, 'SkipStep', async (req: pb.SkipStepRequest) => {
        const problems: string[] = [];
        requireId(req.txId, 'tx_id', problems);
        requireId(req.step, 'step', problems);
        const output = jsonFromBytes(req.output, 'output', problems, undefined, settings.jsonBounds);
        throwIfAny(problems);
        return { run: runToProto(await o.skipStep(req.txId, req.step, output)) };
      }),

      resumeCompensation: unaryCall(
        settings,
        'ResumeCompensation',
        async (req: pb.ResumeCompensationRequest) => {
          const problems: string[] = [];
          requireId(req.txId, 'tx_id', problems);
          throwIfAny(problems);
          return { run: runToProto(await o.resumeCompensation(req.txId)) };
        },
      ),
    };
  }

  /** Open WatchWorkflow streams. */
  get openWatches(): number {
    return this.watches.size;
  }

  /** Ends every open WatchWorkflow stream with `status` (UNAVAILABLE at shutdown: clients re-watch). */
  endWatches(end: Partial<StatusObject> & { code: status; details: string }): void {
    for (const watch of [...this.watches]) watch.end(end);
  }

  /**
   * The run as it is now, then every change in order, until it is terminal (then the stream ends
   * OK), the client cancels, the deadline passes, or the server shuts down. Subscribes *before*
   * reading the current state, so no change falls between the read and the subscription.
   */
  private watch: handleServerStreamingCall<pb.WatchWorkflowRequest, pb.WatchWorkflowResponse> = (call) => {
    const request: unknown = call.request;
    if (request instanceof MalformedRequest) {
      call.emit('error', request.toStatus());
      return;
    }
    const { txId } = request as pb.WatchWorkflowRequest;
    const problems: string[] = [];
    requireId(txId, 'tx_id', problems);
    if (problems.length > 0) {
      call.emit('error', toGrpcStatus(new ValidationError('invalid request', problems)).status);
      return;
    }
    new WatchStream(call, txId, this.orchestrator, this.hub, this.settings, this.watches).open();
  };
}

/** One WatchWorkflow stream. */
class WatchStream implements OpenWatch {
  private last: Run | undefined;
  private lastJson = '';
  private buffered: Run[] | undefined = [];
  private stop: () => void = () => undefined;
  private timers: NodeJS.Timeout[] = [];
  private ended = false;

  constructor(
    private readonly call: ServerWritableStream<pb.WatchWorkflowRequest, pb.WatchWorkflowResponse>,
    private readonly txId: string,
    private readonly orchestrator: OrchestratorApi,
    private readonly hub: RunWatchHub,
    private readonly settings: OrchestratorServiceSettings,
    private readonly registry: Set<OpenWatch>,
  ) {}

  open(): void {
    this.registry.add(this);
    try {
      this.stop = this.hub.watch(this.txId, (run) => {
        if (this.buffered !== undefined) this.buffered.push(run);
        else this.send(run);
      });
    } catch (err) {
      // The orchestrator is not there yet (its backend still connecting: UNAVAILABLE).
      this.end(toGrpcStatus(err).status);
      return;
    }
    // Whatever ends the call (client cancel, client deadline, stream closed) releases the listener.
    this.call.once('cancelled', () => this.release());
    this.call.once('close', () => this.release());
    this.call.once('finish', () => this.release());
    const budget = streamBudget(this.call, this.settings.maxWatchMs);
    this.timers.push(setTimeout(() => this.end(budget.end), budget.ms));
    this.orchestrator.getRun(this.txId).then(
      (current) => {
        const buffered = this.buffered ?? [];
        this.buffered = undefined;
        // Changes that arrived while reading: drop those up to the state we read (it is one of
        // them, or older than all of them).
        const json = JSON.stringify(current);
        const at = buffered.findIndex((run) => JSON.stringify(run) === json);
        const queue = at >= 0 ? buffered.slice(at) : [current, ...buffered];
        for (const run of queue) this.send(run);
        if (!this.ended && this.settings.watchPollIntervalMs > 0) this.poll();
      },
      (err: unknown) => {
        const mapped = toGrpcStatus(err);
        if (mapped.unexpected) this.settings.logger.error({ txId: this.txId, err }, 'WatchWorkflow failed');
        this.end(mapped.status);
      },
    );
  }

  end(end: Partial<StatusObject> & { code: status; details: string }): void {
    if (this.ended) return;
    this.release();
    this.call.emit('error', end);
  }

  /** Re-reads the run now and then: a safety net for changes no feed brought (lifecycle events off). */
  private poll(): void {
    const timer = setTimeout(() => {
      this.orchestrator.getRun(this.txId).then(
        (run) => {
          this.send(run);
          if (!this.ended) this.poll();
        },
        () => {
          if (!this.ended) this.poll();
        },
      );
    }, this.settings.watchPollIntervalMs);
    this.timers.push(timer);
  }

  private send(run: Run): void {
    try {
      this.forward(run);
    } catch (err) {
      // A run that cannot be mapped must not become an unhandled rejection (it would take the
      // process down): end this stream alone.
      this.settings.logger.error({ txId: this.txId, err }, 'WatchWorkflow could not send a change');
      this.end(toGrpcStatus(err).status);
    }
  }

  private forward(run: Run): void {
    if (this.ended) return;
    const last = this.last;
    // Only ever forward: never an older copy (a poll racing a notification), never twice the same.
    if (last !== undefined && (isTerminalRunState(last.state) || run.updatedAt < last.updatedAt)) return;
    const json = JSON.stringify(run);
    if (json === this.lastJson) return;
    this.last = run;
    this.lastJson = json;
    this.call.write({ run: runToProto(run) });
    if (isTerminalRunState(run.state)) {
      this.release();
      this.call.end();
    }
  }

  private release(): void {
    if (this.ended) return;
    this.ended = true;
    this.stop();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
    this.registry.delete(this);
  }
}
