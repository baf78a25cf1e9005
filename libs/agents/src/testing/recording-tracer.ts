// A Tracer that keeps every span it starts (name, attributes, status, ended), for the tests of
// the gen_ai spans; the workspace has no OpenTelemetry SDK, and the API is all an agent uses.
import {
  trace,
  TraceFlags,
  type Attributes,
  type AttributeValue,
  type Context,
  type Span,
  type SpanContext,
  type SpanOptions,
  type SpanStatus,
  type Tracer,
} from '@opentelemetry/api';

/** One span a {@link RecordingTracer} started. */
export interface RecordedSpan {
  readonly name: string;
  readonly attributes: Attributes;
  /** The trace and span ids of the parent the span was started under, when it had one. */
  readonly parent?: { readonly traceId: string; readonly spanId: string };
  status?: SpanStatus;
  ended: boolean;
}

class RecordingSpan implements Span {
  constructor(
    private readonly record: RecordedSpan,
    private readonly id: string,
  ) {}
  /** In its parent's trace (a new one without a parent), with an id of its own. */
  spanContext(): SpanContext {
    return {
      traceId: this.record.parent?.traceId ?? '0'.repeat(31) + '1',
      spanId: this.id,
      traceFlags: TraceFlags.SAMPLED,
    };
  }
  setAttribute(key: string, value: AttributeValue): this {
    (this.record.attributes as Record<string, AttributeValue>)[key] = value;
    return this;
  }
  setAttributes(attributes: Attributes): this {
    Object.assign(this.record.attributes, attributes);
    return this;
  }
  addEvent(): this {
    return this;
  }
  addLink(): this {
    return this;
  }
  addLinks(): this {
    return this;
  }
  setStatus(status: SpanStatus): this {
    this.record.status = status;
    return this;
  }
  updateName(): this {
    return this;
  }
  end(): void {
    this.record.ended = true;
  }
  isRecording(): boolean {
    return !this.record.ended;
  }
  recordException(): void {}
}

/** Keeps every span started through it, in start order. */
export class RecordingTracer implements Tracer {
  readonly spans: RecordedSpan[] = [];

  startSpan(name: string, options?: SpanOptions, context?: Context): Span {
    const parent = context === undefined ? undefined : trace.getSpanContext(context);
    const record: RecordedSpan = {
      name,
      attributes: { ...(options?.attributes ?? {}) },
      ended: false,
      ...(parent === undefined ? {} : { parent: { traceId: parent.traceId, spanId: parent.spanId } }),
    };
    this.spans.push(record);
    return new RecordingSpan(record, this.spans.length.toString(16).padStart(16, '0'));
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, fn: F): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    options: SpanOptions,
    fn: F,
  ): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    options: SpanOptions,
    context: Context,
    fn: F,
  ): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    ...rest: [F] | [SpanOptions, F] | [SpanOptions, Context, F]
  ): ReturnType<F> {
    const fn = rest[rest.length - 1] as F;
    const options = rest.length > 1 ? (rest[0] as SpanOptions) : undefined;
    const context = rest.length > 2 ? (rest[1] as Context) : undefined;
    return fn(this.startSpan(name, options, context)) as ReturnType<F>;
  }
}
