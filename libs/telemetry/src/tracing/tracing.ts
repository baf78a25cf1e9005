import type { Logger } from '@multiagents/core';
import { trace, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type Sampler,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { OrchestratorTracing } from './orchestrator-tracing';
import { SamplerName, withoutCredentials, type TracingConfig } from './tracing-config';
import { WorkerTracing } from './worker-tracing';

/** The instrumentation scope name of every span this library makes. */
export const TRACER_NAME = '@multiagents/telemetry';

/** Options of {@link Tracing}. */
export interface TracingOptions {
  readonly serviceName: string;
  readonly sampler?: Sampler;
  /** Where finished spans go (tests pass a SimpleSpanProcessor over an in-memory exporter). */
  readonly spanProcessor: SpanProcessor;
  /** `messaging.system` of the spans: the backend's bus (`redis`, `nats`, `memory`). */
  readonly messagingSystem: string;
  readonly resourceAttributes?: Readonly<Record<string, string>>;
}

/** The sampler `OTEL_TRACES_SAMPLER` / `_ARG` name. */
export function samplerFor(name: SamplerName, ratio: number): Sampler {
  switch (name) {
    case SamplerName.AlwaysOn:
      return new AlwaysOnSampler();
    case SamplerName.AlwaysOff:
      return new AlwaysOffSampler();
    case SamplerName.TraceIdRatio:
      return new TraceIdRatioBasedSampler(ratio);
    case SamplerName.ParentBasedAlwaysOff:
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case SamplerName.ParentBasedTraceIdRatio:
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
    case SamplerName.ParentBasedAlwaysOn:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/**
 * One service's tracing: a tracer provider of its own (never installed as the global one, and no
 * context manager: contexts travel explicitly through the core's observer seam), and the
 * observers that plug into the orchestrator and the worker-manager. `shutdown()` exports what is
 * left; call it on graceful shutdown, after the engine has stopped.
 *
 * @example
 * const config = parseTracingConfig(env, { serviceName: 'orchestrator' });
 * const tracing = config && Tracing.fromConfig(config, { messagingSystem: 'redis', logger });
 * const orchestrator = new Orchestrator({ ...backend, observer: tracing?.orchestratorObserver() });
 * // on SIGTERM, after orchestrator.close():
 * await tracing?.shutdown();
 */
export class Tracing {
  /** The tracer the observers use. */
  readonly tracer: Tracer;
  private readonly provider: BasicTracerProvider;
  private readonly messagingSystem: string;

  constructor(options: TracingOptions) {
    this.messagingSystem = options.messagingSystem;
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        ...options.resourceAttributes,
        'service.name': options.serviceName,
      }),
      sampler: options.sampler ?? samplerFor(SamplerName.ParentBasedAlwaysOn, 1),
      spanProcessors: [options.spanProcessor],
    });
    this.tracer = this.provider.getTracer(TRACER_NAME);
  }

  /**
   * Tracing as the `OTEL_*` variables configured it (see `parseTracingConfig`): spans batched
   * and sent with OTLP/HTTP protobuf. Export failures are logged (at most one line per 30 s),
   * never thrown: a collector that is down costs spans, not runs.
   */
  static fromConfig(
    config: TracingConfig,
    options: { readonly messagingSystem: string; readonly logger?: Logger },
  ): Tracing {
    const exporter = new OTLPTraceExporter({ url: config.tracesUrl, headers: { ...config.headers } });
    const logger = options.logger;
    let lastWarning = 0;
    const processor = new BatchSpanProcessor(
      {
        export: (spans, done) =>
          exporter.export(spans, (result) => {
            if (result.error !== undefined && logger !== undefined && Date.now() - lastWarning > 30_000) {
              lastWarning = Date.now();
              logger.warn(
                { err: String(result.error), url: withoutCredentials(config.tracesUrl), spans: spans.length },
                'exporting spans failed',
              );
            }
            done(result);
          }),
        shutdown: () => exporter.shutdown(),
        forceFlush: () => exporter.forceFlush(),
      },
      { maxQueueSize: 8192, maxExportBatchSize: 512, scheduledDelayMillis: 1000 },
    );
    return new Tracing({
      serviceName: config.serviceName,
      sampler: samplerFor(config.sampler, config.samplerRatio),
      spanProcessor: processor,
      messagingSystem: options.messagingSystem,
      resourceAttributes: config.resourceAttributes,
    });
  }

  /**
   * Makes this the process's global tracer provider, so code that asks the OpenTelemetry API for
   * a tracer (`trace.getTracer(name)`: a worker module's agents, an instrumentation library) gets
   * one that exports with the service's settings. False when another provider was there first.
   */
  registerGlobally(): boolean {
    return trace.setGlobalTracerProvider(this.provider);
  }

  /** The orchestrator's observer: root, dispatch, compensation, wait/sleep and run spans. */
  orchestratorObserver(): OrchestratorTracing {
    return new OrchestratorTracing(this.tracer, { messagingSystem: this.messagingSystem });
  }

  /** The worker-manager's observer: one CONSUMER span per attempt. */
  workerObserver(): WorkerTracing {
    return new WorkerTracing(this.tracer, { messagingSystem: this.messagingSystem });
  }

  /** Exports the spans ended so far. */
  forceFlush(): Promise<void> {
    return this.provider.forceFlush();
  }

  /** Exports what is left and stops; spans ended later are dropped. */
  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}
