import type {
  AttemptInfo,
  AttemptResult,
  AttemptScope,
  ObservedCommand,
  TraceHeaders,
  WorkerObserver,
} from '@multiagents/core';
import { context, SpanKind, SpanStatusCode, trace, type Span, type Tracer } from '@opentelemetry/api';
import { Attr, SpanName } from './attributes';
import { contextFromHeaders, formatTraceHeaders, isSampled } from './trace-context';

/** Options of {@link WorkerTracing}. */
export interface WorkerTracingOptions {
  /** `messaging.system` of the attempt spans: the backend's bus (`redis`, `nats`, `memory`). */
  readonly messagingSystem: string;
}

/** One sampled attempt: its CONSUMER span, and the trace and span ids its log lines carry. */
class TracedAttempt implements AttemptScope {
  readonly logFields: Readonly<Record<string, string>>;
  readonly traceHeaders: TraceHeaders;

  constructor(private readonly span: Span) {
    const spanContext = span.spanContext();
    this.logFields = { trace_id: spanContext.traceId, span_id: spanContext.spanId };
    this.traceHeaders = formatTraceHeaders(spanContext);
  }

  /**
   * Runs the handler with the attempt's span as the active one. Without a context manager
   * installed (the default: none is, to keep async hooks off the hot path) this is a plain call;
   * an application that installs one gets the span as parent of its own spans.
   */
  run<T>(work: () => T): T {
    return context.with(trace.setSpan(context.active(), this.span), work);
  }

  end(result: AttemptResult): void {
    const span = this.span;
    span.setAttribute(Attr.Outcome, result.kind);
    if (result.kind === 'failed') {
      span.setAttribute(Attr.ErrorType, result.code);
      span.setAttribute(Attr.Retryable, result.retryable);
      span.setStatus({ code: SpanStatusCode.ERROR, message: result.code });
    }
    span.end();
  }
}

/**
 * The worker-manager's half of one trace per run: each attempt is a CONSUMER span
 * `process <worker>`, a child of the `traceparent` its command carries (the orchestrator's
 * dispatch span, in another process), so retries are separate attempt spans under their own
 * dispatches. A command of an unsampled run costs one string check.
 *
 * @example
 * const manager = new WorkerManager({ bus, workers, observer: new WorkerTracing(tracer, { messagingSystem: 'redis' }) });
 */
export class WorkerTracing implements WorkerObserver {
  private readonly messagingSystem: string;

  constructor(
    private readonly tracer: Tracer,
    options: WorkerTracingOptions,
  ) {
    this.messagingSystem = options.messagingSystem;
  }

  attemptStarted(command: ObservedCommand, info: AttemptInfo): AttemptScope | undefined {
    if (!isSampled(command.headers)) return undefined;
    const { payload } = command;
    const span = this.tracer.startSpan(
      `${SpanName.Process} ${payload.worker}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          [Attr.RunId]: command.txId,
          [Attr.WorkflowId]: command.workflowId,
          [Attr.StepName]: command.step,
          [Attr.Attempt]: command.attempt,
          [Attr.Worker]: payload.worker,
          [Attr.Compensation]: payload.compensation,
          [Attr.DeliveryCount]: info.deliveryCount,
          [Attr.MessagingSystem]: this.messagingSystem,
          [Attr.MessagingOperationType]: 'process',
          [Attr.MessagingDestinationName]: info.topic,
          [Attr.MessagingMessageId]: payload.commandId,
          [Attr.MessagingConsumerGroupName]: info.group,
          [Attr.MessagingClientId]: info.managerId,
        },
      },
      contextFromHeaders(command.headers),
    );
    return new TracedAttempt(span);
  }
}
