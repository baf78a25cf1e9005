import type { Logger } from '@multiagents/core';
import type { Tracing } from './tracing';
import type { TracingConfig } from './tracing-config';

/**
 * Tracing as the `OTEL_*` variables configured it (see `parseTracingConfig` and
 * `Tracing.fromConfig`). The OpenTelemetry SDK and its OTLP exporter are loaded here, on first
 * use: a service with tracing off never loads them, so it pays nothing at start either.
 *
 * @example
 * const tracing = config.tracing && (await createTracing(config.tracing, { messagingSystem: 'redis', logger }));
 */
export async function createTracing(
  config: TracingConfig,
  options: { readonly messagingSystem: string; readonly logger?: Logger },
): Promise<Tracing> {
  const { Tracing: TracingClass } = await import('./tracing');
  return TracingClass.fromConfig(config, options);
}
