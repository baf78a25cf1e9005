import {
  credentials as grpcCredentials,
  Metadata,
  status,
  type CallOptions as GrpcCallOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { decodeEnvelope, type Envelope, type LifecycleEvent, type RunState } from '@multiagents/contracts';
import * as pb from '@multiagents/proto';
import { fromServiceError, isServiceError, RpcError, RpcErrorCode } from './client-errors';
import { resolveClientOptions, type ClientOptions, type ResolvedClientOptions } from './client-options';
import type { CallOptions, MonitoredWorkerManagerView } from './client-types';
import { jsonFromBytes, monitoredWorkerManagerFromProto, runStateFromProto } from './mappers';

/** One committed transition of a run, as {@link EventMonitorClient.getTimeline} answers. */
export interface TimelineTransition {
  readonly version: number;
  /** The run's state after it. */
  readonly state: RunState;
  /** When it happened (ms since the epoch). */
  readonly time: number;
  /** Its lifecycle events in order, each with its details (`durationMs`, `error`, `delayMs`…). */
  readonly events: readonly LifecycleEvent[];
  /** Made from the run's record: the events since the entry before never reached the monitor. */
  readonly reconciled?: boolean;
}

/** A run's timeline. */
export interface RunTimelineView {
  readonly txId: string;
  readonly workflowId: string;
  readonly entries: readonly TimelineTransition[];
}

/** A run the monitor's watchdog found stuck. */
export interface StuckRunView {
  readonly txId: string;
  readonly workflowId: string;
  readonly state: RunState;
  readonly lastProgressAt: number;
  readonly thresholdMs: number;
  readonly detectedAt: number;
  readonly steps: readonly string[];
  readonly version: number;
}

/** A dead letter. */
export interface DeadLetterView {
  readonly id: string;
  readonly topic: string;
  readonly group: string;
  readonly error: string;
  readonly deliveryCount: number;
  readonly deadAt: number;
  readonly sizeBytes: number;
  /** The decoded envelope, when the bytes were a valid one. */
  readonly envelope?: Envelope;
}

type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<GrpcCallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

function cancelled(): RpcError {
  return new RpcError(RpcErrorCode.Cancelled, 'call cancelled by the caller', status.CANCELLED, {
    retryable: false,
  });
}

function envelopeFromProto(envelope: pb.Envelope): Envelope {
  return decodeEnvelope(pb.Envelope.encode(envelope).finish());
}

/**
 * A typed client of the event-monitor's gRPC API (EventMonitorService): run timelines, stuck
 * runs, dead letters (replayed or discarded), worker-managers, and the live event stream. Failures are
 * MultiAgentsError subclasses (compare `code`: NOT_FOUND for an unknown run or dead letter);
 * reads are retried with backoff while the server is UNAVAILABLE. Create one with
 * {@link connectMonitor}.
 */
export class EventMonitorClient {
  private readonly client: pb.EventMonitorServiceClient;
  private readonly options: ResolvedClientOptions;

  /** Use {@link connectMonitor}. */
  constructor(
    /** `host:port` of the event-monitor. */
    readonly address: string,
    options: ClientOptions = {},
  ) {
    this.options = resolveClientOptions(address, options);
    this.client = new pb.EventMonitorServiceClient(
      address,
      this.options.credentials ?? grpcCredentials.createInsecure(),
      {
        'grpc.max_receive_message_length': this.options.maxReceiveMessageBytes,
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 5_000,
        ...this.options.channelOptions,
      },
    );
  }

  /** Every committed transition of a run, in version order. NOT_FOUND when the monitor has none. */
  async getTimeline(txId: string, options?: CallOptions): Promise<RunTimelineView> {
    const res = await this.unary<pb.GetTimelineRequest, pb.GetTimelineResponse>(
      (r, m, o, cb) => this.client.getTimeline(r, m, o, cb),
      { txId },
      true,
      options,
    );
    return {
      txId: res.txId,
      workflowId: res.workflowId,
      entries: res.entries.map((entry) => ({
        version: entry.version,
        state: runStateFromProto(entry.state),
        time: entry.timeMs,
        events: entry.events.map((event) => ({
          ...((jsonFromBytes(event.details, 'event details') as Record<string, unknown> | undefined) ?? {}),
          type: event.type as LifecycleEvent['type'],
          state: runStateFromProto(event.state),
          ...(event.step === undefined ? {} : { step: event.step }),
          ...(event.attempt === undefined ? {} : { attempt: event.attempt }),
        })),
        ...(entry.reconciled ? { reconciled: true } : {}),
      })),
    };
  }

  /** The runs the watchdog lists as stuck, and the default threshold. */
  async listStuckRuns(
    filter: { readonly workflowId?: string } = {},
    options?: CallOptions,
  ): Promise<{ runs: StuckRunView[]; defaultThresholdMs: number }> {
    const res = await this.unary<pb.ListStuckRunsRequest, pb.ListStuckRunsResponse>(
      (r, m, o, cb) => this.client.listStuckRuns(r, m, o, cb),
      { workflowId: filter.workflowId ?? '' },
      true,
      options,
    );
    return {
      defaultThresholdMs: res.defaultThresholdMs,
      runs: res.runs.map((run) => ({
        txId: run.txId,
        workflowId: run.workflowId,
        state: runStateFromProto(run.state),
        lastProgressAt: run.lastProgressMs,
        thresholdMs: run.thresholdMs,
        detectedAt: run.detectedAtMs,
        steps: [...run.steps],
        version: run.version,
      })),
    };
  }

  /** Dead letters of `topic`, or of every topic the deployment uses. */
  async listDeadLetters(
    filter: { readonly topic?: string; readonly limit?: number } = {},
    options?: CallOptions,
  ): Promise<DeadLetterView[]> {
    const res = await this.unary<pb.ListDeadLettersRequest, pb.ListDeadLettersResponse>(
      (r, m, o, cb) => this.client.listDeadLetters(r, m, o, cb),
      { topic: filter.topic ?? '', limit: filter.limit ?? 0 },
      true,
      options,
    );
    return res.deadLetters.map((letter) => {
      let envelope: Envelope | undefined;
      try {
        envelope = letter.envelope === undefined ? undefined : envelopeFromProto(letter.envelope);
      } catch {
        // An envelope this client cannot read: the letter is still listed.
      }
      return {
        id: letter.id,
        topic: letter.topic,
        group: letter.group,
        error: letter.error,
        deliveryCount: letter.deliveryCount,
        deadAt: letter.deadAtMs,
        sizeBytes: letter.sizeBytes,
        ...(envelope === undefined ? {} : { envelope }),
      };
    });
  }

  /** Publishes a dead letter again and removes it. NOT_FOUND when the topic holds no such letter. */
  async replayDeadLetter(topic: string, id: string, options?: CallOptions): Promise<void> {
    // Not retried: a replay whose answer was lost must not publish the message twice.
    await this.unary<pb.ReplayDeadLetterRequest, pb.ReplayDeadLetterResponse>(
      (r, m, o, cb) => this.client.replayDeadLetter(r, m, o, cb),
      { topic, id },
      false,
      options,
    );
  }

  /** Deletes a dead letter for good (never published again). NOT_FOUND when the topic holds no such letter. */
  async discardDeadLetter(topic: string, id: string, options?: CallOptions): Promise<void> {
    // Not retried: a discard whose answer was lost would be answered NOT_FOUND the second time.
    await this.unary<pb.DiscardDeadLetterRequest, pb.DiscardDeadLetterResponse>(
      (r, m, o, cb) => this.client.discardDeadLetter(r, m, o, cb),
      { topic, id },
      false,
      options,
    );
  }

  /** Every worker-manager replica the monitor knows: live ones and those gone silent. */
  async listWorkers(options?: CallOptions): Promise<MonitoredWorkerManagerView[]> {
    const res = await this.unary<pb.ListMonitoredWorkersRequest, pb.ListMonitoredWorkersResponse>(
      (r, m, o, cb) => this.client.listMonitoredWorkers(r, m, o, cb),
      {},
      true,
      options,
    );
    return res.managers.map(monitoredWorkerManagerFromProto);
  }

  /**
   * Events as the monitor receives them, until `signal` aborts or the server ends the stream.
   * `onOpen` is called once the server holds the watch (events from then on are delivered).
   */
  async *watchEvents(
    filter: { readonly workflowId?: string; readonly txId?: string } = {},
    options: { signal?: AbortSignal; timeoutMs?: number; onOpen?: () => void } = {},
  ): AsyncGenerator<Envelope, void, undefined> {
    if (options.signal?.aborted) throw cancelled();
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    const stream: ClientReadableStream<pb.WatchEventsResponse> = this.client.watchEvents(
      { workflowId: filter.workflowId ?? '', txId: filter.txId ?? '' },
      await this.metadata(),
      deadline === undefined ? {} : { deadline },
    );
    stream.on('error', () => undefined);
    if (options.onOpen) stream.once('metadata', options.onOpen);
    const onAbort = (): void => stream.cancel();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const message of stream as AsyncIterable<pb.WatchEventsResponse>) {
        if (message.envelope !== undefined) yield envelopeFromProto(message.envelope);
      }
    } catch (err) {
      if (options.signal?.aborted) return;
      throw fromServiceError(err, { address: this.address });
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      stream.cancel();
    }
  }

  /** Closes the connection. */
  close(): void {
    this.client.close();
  }

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
        return await this.once(method, request, await this.metadata(), deadline, options.signal);
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
        await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
  }

  private async metadata(): Promise<Metadata> {
    const metadata = new Metadata();
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
 * Connects to an event-monitor's gRPC API (lazily, on the first call).
 *
 * @example
 * const monitor = connectMonitor('127.0.0.1:50055');
 * const { entries } = await monitor.getTimeline(txId);
 * monitor.close();
 */
export function connectMonitor(address: string, options: ClientOptions = {}): EventMonitorClient {
  return new EventMonitorClient(address, options);
}
