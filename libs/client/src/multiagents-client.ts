import {
  credentials as grpcCredentials,
  Metadata,
  status,
  type CallOptions as GrpcCallOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { MAX_DRAIN_TIMEOUT_MS, type Run, type WorkflowDefinition } from '@multiagents/contracts';
import * as pb from '@multiagents/proto';
import { fromServiceError, isServiceError, RpcError, RpcErrorCode } from './client-errors';
import { resolveClientOptions, type ClientOptions, type ResolvedClientOptions } from './client-options';
import type {
  CallOptions,
  DrainResult,
  RegisterWorkflowResult,
  WorkerManagerSummary,
  StartWorkflowResult,
  WorkerList,
  WorkflowDefinitionSummary,
  WorkflowFilter,
  WorkflowPage,
} from './client-types';
import {
  definitionFromProto,
  definitionSummaryFromProto,
  definitionToProto,
  jsonToBytes,
  runFromProto,
  runStateToProto,
  workerStatusFromProto,
} from './mappers';

type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<GrpcCallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Headroom over the drain timeout for Drain's answer. */
const DRAIN_ANSWER_MARGIN_MS = 10_000;
/** How long a watch waits for a server that went away (a restart) before it gives up. */
const WATCH_OUTAGE_MS = 30_000;

/**
 * The deadline of a Drain call: its drain timeout and room for the answer. Without one the manager
 * uses its configured timeout, which a client does not know: as long as the longest drain a
 * server accepts.
 */
export function drainDeadlineMs(drainTimeoutMs: number | undefined, callTimeoutMs: number): number {
  return Math.max(callTimeoutMs, (drainTimeoutMs ?? MAX_DRAIN_TIMEOUT_MS) + DRAIN_ANSWER_MARGIN_MS);
}

function toMs(value: number | Date): number {
  return value instanceof Date ? value.getTime() : value;
}

function cancelled(): RpcError {
  return new RpcError(RpcErrorCode.Cancelled, 'call cancelled by the caller', status.CANCELLED, {
    retryable: false,
  });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(cancelled());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A typed client of the orchestrator's gRPC API (and of the WorkerManagerService served next to
 * it). Methods take and return domain types from `@multiagents/contracts`; failures are
 * MultiAgentsError subclasses (`ValidationError`, `RunNotFoundError`, `FailedPreconditionError`…,
 * or {@link RpcError} for transport failures) — compare their `code`. Every call has a deadline;
 * idempotent calls (reads, register, start with an idempotency key, drain) are retried with
 * backoff while the server is UNAVAILABLE. Create one with {@link connect}.
 */
export class MultiAgentsClient {
  private readonly orchestrator: pb.OrchestratorServiceClient;
  private readonly workerManager: pb.WorkerManagerServiceClient;
  private readonly options: ResolvedClientOptions;
  /** The token is a function called before each call: a watch ended by its expiry can go on. */
  private readonly refreshesToken: boolean;

  /** Use {@link connect}. */
  constructor(
    /** `host:port` of the orchestrator. */
    readonly address: string,
    options: ClientOptions = {},
  ) {
    this.options = resolveClientOptions(address, options);
    this.refreshesToken = typeof options.token === 'function';
    const channelOptions = {
      'grpc.max_receive_message_length': this.options.maxReceiveMessageBytes,
      // grpc-js waits 1 s before reconnecting after a failed connect: longer than the first
      // retries of a call, which would then all fail on the same dead channel.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 5_000,
      ...this.options.channelOptions,
    };
    const creds = this.options.credentials ?? grpcCredentials.createInsecure();
    this.orchestrator = new pb.OrchestratorServiceClient(address, creds, channelOptions);
    // One channel (one connection) for both services.
    this.workerManager = new pb.WorkerManagerServiceClient(address, creds, {
      ...channelOptions,
      channelOverride: this.orchestrator.getChannel(),
    });
  }

  /** Resolves once the channel is connected; rejects with UNAVAILABLE after `timeoutMs`. */
  waitForReady(timeoutMs = this.options.timeoutMs): Promise<void> {
    return new Promise((resolve, reject) => {
      this.orchestrator.waitForReady(Date.now() + timeoutMs, (err) =>
        err
          ? reject(
              new RpcError(
                RpcErrorCode.Unavailable,
                `cannot reach ${this.address}: ${err.message}`,
                status.UNAVAILABLE,
                {
                  cause: err,
                },
              ),
            )
          : resolve(),
      );
    });
  }

  /** Validates and stores a definition on the server (every problem listed when invalid). */
  async registerWorkflow(
    definition: WorkflowDefinition,
    options?: CallOptions,
  ): Promise<RegisterWorkflowResult> {
    // Registering the same content again is a no-op, so a retry is safe.
    const res = await this.unary<pb.RegisterWorkflowRequest, pb.RegisterWorkflowResponse>(
      (r, m, o, cb) => this.orchestrator.registerWorkflow(r, m, o, cb),
      { definition: definitionToProto(definition) },
      true,
      options,
    );
    return { created: res.created, id: res.id, version: res.version, warnings: [...res.warnings] };
  }

  /** One version of a definition; the latest without `version`. */
  async getWorkflowDefinition(
    id: string,
    options: CallOptions & { version?: number } = {},
  ): Promise<WorkflowDefinition> {
    const res = await this.unary<pb.GetWorkflowDefinitionRequest, pb.GetWorkflowDefinitionResponse>(
      (r, m, o, cb) => this.orchestrator.getWorkflowDefinition(r, m, o, cb),
      { id, version: options.version },
      true,
      options,
    );
    if (res.definition === undefined) throw this.missing('definition');
    return definitionFromProto(res.definition);
  }

  /** Every registered definition id with its versions. */
  async listWorkflowDefinitions(options?: CallOptions): Promise<WorkflowDefinitionSummary[]> {
    const res = await this.unary<pb.ListWorkflowDefinitionsRequest, pb.ListWorkflowDefinitionsResponse>(
      (r, m, o, cb) => this.orchestrator.listWorkflowDefinitions(r, m, o, cb),
      {},
      true,
      options,
    );
    return res.definitions.map(definitionSummaryFromProto);
  }

  /**
   * Starts a run of `workflowId` with `input` (a JSON object). With an `idempotencyKey` the same
   * key returns the same run and the call is retried while the server is unavailable; without
   * one it is not (a retry could start a second run).
   */
  async startWorkflow(
    workflowId: string,
    input: Record<string, unknown>,
    options: CallOptions & { idempotencyKey?: string; version?: number } = {},
  ): Promise<StartWorkflowResult> {
    const res = await this.unary<pb.StartWorkflowRequest, pb.StartWorkflowResponse>(
      (r, m, o, cb) => this.orchestrator.startWorkflow(r, m, o, cb),
      {
        workflowId,
        version: options.version,
        input: jsonToBytes(input),
        idempotencyKey: options.idempotencyKey,
      },
      options.idempotencyKey !== undefined,
      options,
    );
    return { txId: res.txId, created: res.created };
  }

  /** A run: state, context, every step with attempts, outputs, errors and times. */
  async getWorkflow(txId: string, options?: CallOptions): Promise<Run> {
    const res = await this.unary<pb.GetWorkflowRequest, pb.GetWorkflowResponse>(
      (r, m, o, cb) => this.orchestrator.getWorkflow(r, m, o, cb),
      { txId },
      true,
      options,
    );
    if (res.run === undefined) throw this.missing('run');
    return runFromProto(res.run);
  }

  /** One page of runs, newest first. */
  async listWorkflows(
    filter: WorkflowFilter = {},
    options: CallOptions & { pageSize?: number; pageToken?: string } = {},
  ): Promise<WorkflowPage> {
    const res = await this.unary<pb.ListWorkflowsRequest, pb.ListWorkflowsResponse>(
      (r, m, o, cb) => this.orchestrator.listWorkflows(r, m, o, cb),
      {
        state: filter.state === undefined ? undefined : runStateToProto(filter.state),
        workflowId: filter.workflowId,
        createdAfterMs: filter.createdAfter === undefined ? undefined : toMs(filter.createdAfter),
        createdBeforeMs: filter.createdBefore === undefined ? undefined : toMs(filter.createdBefore),
        pageSize: options.pageSize ?? 0,
        pageToken: options.pageToken ?? '',
      },
      true,
      options,
    );
    return {
      runs: res.runs.map(runFromProto),
      ...(res.nextPageToken === '' ? {} : { nextPageToken: res.nextPageToken }),
    };
  }

  /**
   * The run as it is now, then after every change, until it is terminal (or `timeoutMs` passes).
   * Stop early with `break` or the signal: the stream is cancelled and the server frees it. A
   * watch the server ends at its own limit (an hour by default) is opened again at once; one
   * ended by the token's expiry too, when the token is a function that refreshes it; if the
   * server goes away (UNAVAILABLE, as at a restart) it watches again with backoff for up to 30 s.
   * It goes on from the current state: intermediate states in a gap are not replayed.
   *
   * @example
   * for await (const run of client.watchWorkflow(txId)) render(run.state);
   */
  async *watchWorkflow(
    txId: string,
    options: { signal?: AbortSignal; timeoutMs?: number } = {},
  ): AsyncGenerator<Run, void, undefined> {
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    const { maxAttempts, initialBackoffMs, maxBackoffMs } = this.options.retry;
    let lastJson: string | undefined;
    let failures = 0;
    let outageSince: number | undefined;
    let expiredInARow = 0;
    for (;;) {
      if (options.signal?.aborted) throw cancelled();
      const stream: ClientReadableStream<pb.WatchWorkflowResponse> = this.orchestrator.watchWorkflow(
        { txId },
        await this.metadata(),
        deadline === undefined ? {} : { deadline },
      );
      // After cancel() the stream may still emit its CANCELLED error: never leave it unhandled.
      stream.on('error', () => undefined);
      const onAbort = (): void => stream.cancel();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        for await (const message of stream as AsyncIterable<pb.WatchWorkflowResponse>) {
          failures = 0;
          outageSince = undefined;
          expiredInARow = 0;
          if (message.run === undefined) continue;
          const run = runFromProto(message.run);
          const json = JSON.stringify(run);
          if (json === lastJson) continue;
          lastJson = json;
          yield run;
        }
        return;
      } catch (err) {
        if (options.signal?.aborted) throw cancelled();
        const now = Date.now();
        const beforeDeadline = deadline === undefined || now < deadline;
        if (!isServiceError(err) || !beforeDeadline) throw fromServiceError(err, { address: this.address });
        // The server ended the watch at its own limit (the run is still going: watch again at
        // once), or the token that opened it expired (again with a fresh one, when the token is
        // a function that refreshes it; twice in a row means it does not).
        if (err.code === status.DEADLINE_EXCEEDED) continue;
        if (err.code === status.UNAUTHENTICATED && this.refreshesToken && expiredInARow++ === 0) continue;
        // The server is away (a restart, a shutdown: UNAVAILABLE): watch again with backoff for
        // up to WATCH_OUTAGE_MS, longer than a restart takes, not a few attempts (none when the
        // client was made with retry.maxAttempts 1).
        outageSince ??= now;
        if (err.code !== status.UNAVAILABLE || maxAttempts <= 1 || now - outageSince > WATCH_OUTAGE_MS) {
          throw fromServiceError(err, { address: this.address });
        }
        failures++;
        const backoff = Math.min(maxBackoffMs, initialBackoffMs * 2 ** (failures - 1));
        await sleep(backoff / 2 + (Math.random() * backoff) / 2, options.signal);
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
        stream.cancel();
      }
    }
  }

  /** Delivers a named signal (kept if its wait step has not started). Returns the run after it. */
  async signalWorkflow(txId: string, name: string, payload?: unknown, options?: CallOptions): Promise<Run> {
    const res = await this.unary<pb.SignalWorkflowRequest, pb.SignalWorkflowResponse>(
      (r, m, o, cb) => this.orchestrator.signalWorkflow(r, m, o, cb),
      { txId, name, payload: jsonToBytes(payload) },
      false,
      options,
    );
    if (res.run === undefined) throw this.missing('run');
    return runFromProto(res.run);
  }

  /** Cancels a run: in-flight steps finish, completed ones are compensated. Returns the run after it. */
  async cancelWorkflow(txId: string, reason?: string, options?: CallOptions): Promise<Run> {
    const res = await this.unary<pb.CancelWorkflowRequest, pb.CancelWorkflowResponse>(
      (r, m, o, cb) => this.orchestrator.cancelWorkflow(r, m, o, cb),
      { txId, reason },
      false,
      options,
    );
    if (res.run === undefined) throw this.missing('run');
    return runFromProto(res.run);
  }

  /** Operator action: runs a failed step (or a failed compensation) again with a fresh retry budget. */
  async retryStep(txId: string, step: string, options?: CallOptions): Promise<Run> {
    const res = await this.unary<pb.RetryStepRequest, pb.RetryStepResponse>(
      (r, m, o, cb) => this.orchestrator.retryStep(r, m, o, cb),
      { txId, step },
      false,
      options,
    );
    if (res.run === undefined) throw this.missing('run');
    return runFromProto(res.run);
  }

  /** Operator action: skips a failed step (or a failed compensation) and goes on. */
  async skipStep(txId: string, step: string, output?: unknown, options?: CallOptions): Promise<Run> {
    const res = await this.unary<pb.SkipStepRequest, pb.SkipStepResponse>(
      (r, m, o, cb) => this.orchestrator.skipStep(r, m, o, cb),
      { txId, step, output: jsonToBytes(output) },
      false,
      options,
    );
    if (res.run === undefined) throw this.missing('run');
    return runFromProto(res.run);
  }

  /** Operator action: resumes the unwinding of a compensation_failed run by retrying its failed compensation. */
  async resumeCompensation(txId: string, options?: CallOptions): Promise<Run> {
    const res = await this.unary<pb.ResumeCompensationRequest, pb.ResumeCompensationResponse>(
      (r, m, o, cb) => this.orchestrator.resumeCompensation(r, m, o, cb),
      { txId },
      false,
      options,
    );
    if (res.run === undefined) throw this.missing('run');
    return runFromProto(res.run);
  }

  /** The workers hosted next to the orchestrator, with load and circuit state. */
  /** Every live worker-manager replica of the deployment (the orchestrator reads its registry). */
  async listWorkerManagers(options?: CallOptions): Promise<WorkerManagerSummary[]> {
    const res = await this.unary<pb.ListWorkerManagersRequest, pb.ListWorkerManagersResponse>(
      (r, m, o, cb) => this.orchestrator.listWorkerManagers(r, m, o, cb),
      {},
      true,
      options,
    );
    return res.managers.map((m) => ({
      managerId: m.managerId,
      workers: [...m.workers],
      capacity: m.capacity,
      inFlight: m.inFlight,
      seenAt: m.seenAtMs,
      details: { ...m.details },
    }));
  }

  async listWorkers(options?: CallOptions): Promise<WorkerList> {
    const res = await this.unary<pb.ListWorkersRequest, pb.ListWorkersResponse>(
      (r, m, o, cb) => this.workerManager.listWorkers(r, m, o, cb),
      {},
      true,
      options,
    );
    return {
      managerId: res.managerId,
      draining: res.draining,
      workers: res.workers.map(workerStatusFromProto),
    };
  }

  /**
   * Drains the worker-manager: it takes no new commands and waits for the handlers in flight (up
   * to `drainTimeoutMs`). Resolves once drained. Idempotent.
   */
  async drain(options: CallOptions & { drainTimeoutMs?: number } = {}): Promise<DrainResult> {
    const timeoutMs = options.timeoutMs ?? drainDeadlineMs(options.drainTimeoutMs, this.options.timeoutMs);
    const res = await this.unary<pb.DrainRequest, pb.DrainResponse>(
      (r, m, o, cb) => this.workerManager.drain(r, m, o, cb),
      { drainTimeoutMs: options.drainTimeoutMs },
      true,
      { ...options, timeoutMs },
    );
    return { managerId: res.managerId, workers: res.workers.map(workerStatusFromProto) };
  }

  /** Closes the connection; calls in flight fail with CANCELLED or UNAVAILABLE. */
  close(): void {
    this.workerManager.close();
    this.orchestrator.close();
  }

  private missing(what: string): RpcError {
    return new RpcError(RpcErrorCode.Internal, `the server answered without a ${what}`, status.INTERNAL, {
      retryable: false,
    });
  }

  /** One call with a deadline over all attempts; retried on UNAVAILABLE when `idempotent`. */
  private async unary<Req, Res>(
    method: Unary<Req, Res>,
    request: Req,
    idempotent: boolean,
    options: CallOptions = {},
  ): Promise<Res> {
    const deadline = Date.now() + (options.timeoutMs ?? this.options.timeoutMs);
    const { maxAttempts, initialBackoffMs, maxBackoffMs } = this.options.retry;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once(
          method,
          request,
          await this.metadata(options.traceHeaders),
          deadline,
          options.signal,
        );
      } catch (err) {
        const retry =
          idempotent &&
          attempt < maxAttempts &&
          isServiceError(err) &&
          err.code === status.UNAVAILABLE &&
          options.signal?.aborted !== true;
        if (!retry) throw fromServiceError(err, { address: this.address });
        const backoff = Math.min(maxBackoffMs, initialBackoffMs * 2 ** (attempt - 1));
        const delayMs = backoff / 2 + (Math.random() * backoff) / 2;
        if (Date.now() + delayMs >= deadline) throw fromServiceError(err, { address: this.address });
        await sleep(delayMs, options.signal);
      }
    }
  }

  /** Call metadata: the bearer token, when one is configured, and the caller's trace headers. */
  private async metadata(traceHeaders?: Readonly<Record<string, string>>): Promise<Metadata> {
    const metadata = new Metadata();
    for (const [key, value] of Object.entries(traceHeaders ?? {})) metadata.set(key, value);
    const token = this.options.token;
    if (token !== undefined) metadata.set('authorization', `Bearer ${await token()}`);
    return metadata;
  }

  private once<Req, Res>(
    method: Unary<Req, Res>,
    request: Req,
    metadata: Metadata,
    deadline: number,
    signal: AbortSignal | undefined,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (signal?.aborted) {
        reject(cancelled());
        return;
      }
      const onAbort = (): void => call.cancel();
      const call = method(request, metadata, { deadline }, (error, response) => {
        signal?.removeEventListener('abort', onAbort);
        if (error) reject(error);
        else resolve(response);
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/**
 * Connects to an orchestrator's gRPC API. The connection is made lazily, by the first call (use
 * `waitForReady` to check it up front).
 *
 * @example
 * const client = connect('127.0.0.1:50051');
 * const { txId } = await client.startWorkflow('order_processing', { orderId: 'o-1', total: 42 });
 * for await (const run of client.watchWorkflow(txId)) render(run.state);
 * client.close();
 */
export function connect(address: string, options: ClientOptions = {}): MultiAgentsClient {
  return new MultiAgentsClient(address, options);
}
