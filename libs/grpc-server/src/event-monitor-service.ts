/**
 * EventMonitorService (SPEC §6): the event-monitor's API over gRPC, mapping at the edge, and
 * WatchEvents streams.
 */
import {
  Metadata,
  status,
  type handleServerStreamingCall,
  type ServerWritableStream,
  type StatusObject,
} from '@grpc/grpc-js';
import { encodeEnvelope, ValidationError, type Envelope, type RunState } from '@multiagents/contracts';
import type { DeadLetter, TimelineEntry } from '@multiagents/core';
import * as pb from '@multiagents/proto';
import { MalformedRequest, unaryCall, type HandlerContext } from './call-handlers';
import { streamBudget } from './stream-budget';
import { toGrpcStatus } from './grpc-error';
import { monitoredWorkerManagerToProto, runStateToProto, type MonitorWorkerManager } from './mappers';
import { requireId } from './request-ids';

/** A run's timeline as the monitor answers it. */
export interface MonitorTimeline {
  readonly txId: string;
  readonly workflowId: string;
  readonly entries: readonly TimelineEntry[];
}

/** A run the watchdog found stuck. */
export interface MonitorStuckRun {
  readonly txId: string;
  readonly workflowId: string;
  readonly state: RunState;
  readonly lastProgressAt: number;
  readonly thresholdMs: number;
  readonly detectedAt: number;
  readonly steps: readonly string[];
  readonly version: number;
}

/** What EventMonitorService serves (the monitor lib's `EventMonitor` has this shape). */
export interface EventMonitorApi {
  readonly defaultStuckThresholdMs: number;
  getTimeline(txId: string): Promise<MonitorTimeline>;
  /** The workflow of a run it has a timeline of (for callers limited to some workflows). */
  workflowOf(txId: string): Promise<string | undefined>;
  listStuckRuns(filter?: { readonly workflowId?: string }): Promise<readonly MonitorStuckRun[]>;
  listDeadLetters(topic?: string, limit?: number): Promise<readonly DeadLetter[]>;
  replayDeadLetter(topic: string, id: string): Promise<void>;
  discardDeadLetter(topic: string, id: string): Promise<void>;
  listWorkers(): Promise<readonly MonitorWorkerManager[]>;
  watchEvents(
    filter: { readonly workflowId?: string; readonly txId?: string },
    listener: (envelope: Envelope) => void,
  ): Promise<() => void>;
}

/** Settings of {@link EventMonitorService}. */
export interface EventMonitorServiceSettings extends HandlerContext {
  /** Server-side limit on one WatchEvents stream. */
  readonly maxWatchMs: number;
}

/** An open WatchEvents stream, as the server sees it at shutdown. */
interface OpenWatch {
  end(status: Partial<StatusObject> & { code: status; details: string }): void;
}

function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

/** The domain envelope as its proto message (the bus encoding, without signing or encryption). */
export function envelopeToProto(envelope: Envelope): pb.Envelope {
  return pb.Envelope.decode(encodeEnvelope(envelope));
}

function timelineEntryToProto(entry: TimelineEntry): pb.TimelineEntry {
  return {
    version: entry.version,
    state: runStateToProto(entry.state),
    timeMs: entry.time,
    events: entry.events.map(({ type, state, step, attempt, ...details }) => ({
      type,
      state: runStateToProto(state),
      ...(step === undefined ? {} : { step }),
      ...(attempt === undefined ? {} : { attempt }),
      details: Object.keys(details).length === 0 ? Buffer.alloc(0) : jsonBytes(details),
    })),
    reconciled: entry.reconciled === true,
  };
}

function deadLetterToProto(letter: DeadLetter): pb.DeadLetter {
  let envelope: pb.Envelope | undefined;
  try {
    envelope = letter.envelope === undefined ? undefined : envelopeToProto(letter.envelope);
  } catch {
    // An envelope the codec refuses to encode again: its raw size is still shown.
  }
  return {
    id: letter.id,
    topic: letter.topic,
    group: letter.group,
    error: letter.error,
    deliveryCount: letter.deliveryCount,
    deadAtMs: letter.deadAt,
    ...(envelope === undefined ? {} : { envelope }),
    sizeBytes: letter.data.byteLength,
  };
}

/**
 * The grpc-js implementation of EventMonitorService over an {@link EventMonitorApi}: register
 * `implementation` with `server.addService`; `endWatches` ends every open stream (shutdown).
 */
export class EventMonitorService {
  readonly implementation: pb.EventMonitorServiceServer;
  private readonly watches = new Set<OpenWatch>();

  constructor(
    private readonly monitor: EventMonitorApi,
    private readonly settings: EventMonitorServiceSettings,
  ) {
    this.implementation = {
      getTimeline: unaryCall(settings, 'GetTimeline', async (req: pb.GetTimelineRequest) => {
        const problems: string[] = [];
        requireId(req.txId, 'tx_id', problems);
        if (problems.length > 0) throw new ValidationError('invalid request', problems);
        const timeline = await monitor.getTimeline(req.txId);
        return {
          txId: timeline.txId,
          workflowId: timeline.workflowId,
          entries: timeline.entries.map(timelineEntryToProto),
        };
      }),
      listStuckRuns: unaryCall(settings, 'ListStuckRuns', async (req: pb.ListStuckRunsRequest) => {
        const problems: string[] = [];
        if (req.workflowId) requireId(req.workflowId, 'workflow_id', problems);
        if (problems.length > 0) throw new ValidationError('invalid request', problems);
        const runs = await monitor.listStuckRuns(req.workflowId ? { workflowId: req.workflowId } : {});
        return {
          runs: runs.map((run) => ({
            txId: run.txId,
            workflowId: run.workflowId,
            state: runStateToProto(run.state),
            lastProgressMs: run.lastProgressAt,
            thresholdMs: run.thresholdMs,
            detectedAtMs: run.detectedAt,
            steps: [...run.steps],
            version: run.version,
          })),
          defaultThresholdMs: monitor.defaultStuckThresholdMs,
        };
      }),
      listDeadLetters: unaryCall(settings, 'ListDeadLetters', async (req: pb.ListDeadLettersRequest) => {
        const letters = await monitor.listDeadLetters(req.topic || undefined, req.limit || undefined);
        return { deadLetters: letters.map(deadLetterToProto) };
      }),
      replayDeadLetter: unaryCall(settings, 'ReplayDeadLetter', async (req: pb.ReplayDeadLetterRequest) => {
        const problems: string[] = [];
        requireId(req.topic, 'topic', problems);
        requireId(req.id, 'id', problems);
        if (problems.length > 0) throw new ValidationError('invalid request', problems);
        await monitor.replayDeadLetter(req.topic, req.id);
        return {};
      }),
      discardDeadLetter: unaryCall(
        settings,
        'DiscardDeadLetter',
        async (req: pb.DiscardDeadLetterRequest) => {
          const problems: string[] = [];
          requireId(req.topic, 'topic', problems);
          requireId(req.id, 'id', problems);
          if (problems.length > 0) throw new ValidationError('invalid request', problems);
          await monitor.discardDeadLetter(req.topic, req.id);
          return {};
        },
      ),
      listMonitoredWorkers: unaryCall(settings, 'ListMonitoredWorkers', async () => {
        const managers = await monitor.listWorkers();
        return { managers: managers.map(monitoredWorkerManagerToProto) };
      }),
      watchEvents: (call) => this.watch(call),
    };
  }

  /** Open WatchEvents streams. */
  get openWatches(): number {
    return this.watches.size;
  }

  /** Ends every open WatchEvents stream with `status` (UNAVAILABLE at shutdown: clients watch again). */
  endWatches(end: Partial<StatusObject> & { code: status; details: string }): void {
    for (const watch of [...this.watches]) watch.end(end);
  }

  private watch: handleServerStreamingCall<pb.WatchEventsRequest, pb.WatchEventsResponse> = (call) => {
    const request: unknown = call.request;
    if (request instanceof MalformedRequest) {
      call.emit('error', request.toStatus());
      return;
    }
    const { workflowId, txId } = request as pb.WatchEventsRequest;
    const problems: string[] = [];
    if (workflowId) requireId(workflowId, 'workflow_id', problems);
    if (txId) requireId(txId, 'tx_id', problems);
    if (problems.length > 0) {
      call.emit('error', toGrpcStatus(new ValidationError('invalid request', problems)).status);
      return;
    }
    new EventWatch(
      call,
      { ...(workflowId ? { workflowId } : {}), ...(txId ? { txId } : {}) },
      this.monitor,
      this.settings,
      this.watches,
    ).open();
  };
}

/** Events a WatchEvents stream may hold that its reader has not taken yet: past it, it ends. */
export const MAX_UNSENT_EVENTS = 10_000;

/** One WatchEvents stream. */
class EventWatch implements OpenWatch {
  private stop: () => void = () => undefined;
  private timer: NodeJS.Timeout | undefined;
  private ended = false;

  constructor(
    private readonly call: ServerWritableStream<pb.WatchEventsRequest, pb.WatchEventsResponse>,
    private readonly filter: { readonly workflowId?: string; readonly txId?: string },
    private readonly monitor: EventMonitorApi,
    private readonly settings: EventMonitorServiceSettings,
    private readonly registry: Set<OpenWatch>,
  ) {}

  open(): void {
    this.registry.add(this);
    this.call.once('cancelled', () => this.release());
    this.call.once('close', () => this.release());
    this.call.once('finish', () => this.release());
    const budget = streamBudget(this.call, this.settings.maxWatchMs);
    this.timer = setTimeout(() => this.end(budget.end), budget.ms);
    // A promise from the start: a monitor that is not there yet (its backend still connecting)
    // throws at once, and that ends the stream like any failure to open it (UNAVAILABLE).
    Promise.resolve()
      .then(() =>
        this.monitor.watchEvents(this.filter, (envelope) => {
          if (this.ended) return;
          try {
            const flowing = this.call.write({ envelope: envelopeToProto(envelope) });
            if (!flowing && this.call.writableLength > MAX_UNSENT_EVENTS) {
              // A reader that stopped reading would have the server keep every event for it.
              this.end({
                code: status.RESOURCE_EXHAUSTED,
                details: `more than ${MAX_UNSENT_EVENTS} events not yet read: the watch is ended; read faster, or filter, and watch again`,
              });
            }
          } catch (err) {
            this.settings.logger.warn(
              { err, envelopeId: envelope.id },
              'WatchEvents could not send an event',
            );
          }
        }),
      )
      .then(
        (stop) => {
          if (this.ended) stop();
          else this.stop = stop;
          // Headers now: the client knows the watch is open before any event arrives.
          if (!this.ended) this.call.sendMetadata(new Metadata());
        },
        (err: unknown) => {
          const mapped = toGrpcStatus(err);
          if (mapped.unexpected) this.settings.logger.error({ err }, 'WatchEvents failed');
          this.end(mapped.status);
        },
      );
  }

  end(end: Partial<StatusObject> & { code: status; details: string }): void {
    if (this.ended) return;
    this.release();
    this.call.emit('error', end);
  }

  private release(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.stop();
    this.registry.delete(this);
  }
}
