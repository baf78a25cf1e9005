import { ValidationError } from '@multiagents/contracts';
import type { Environment } from '@multiagents/core';

/** The samplers of `OTEL_TRACES_SAMPLER` (the OpenTelemetry specification's names). */
export const SamplerName = {
  AlwaysOn: 'always_on',
  AlwaysOff: 'always_off',
  TraceIdRatio: 'traceidratio',
  ParentBasedAlwaysOn: 'parentbased_always_on',
  ParentBasedAlwaysOff: 'parentbased_always_off',
  ParentBasedTraceIdRatio: 'parentbased_traceidratio',
} as const;
/** One of {@link SamplerName}'s values. */
export type SamplerName = (typeof SamplerName)[keyof typeof SamplerName];

/** Tracing settings, read from the standard `OTEL_*` variables by {@link parseTracingConfig}. */
export interface TracingConfig {
  /** Where spans go: the full OTLP/HTTP traces URL (`…/v1/traces`). */
  readonly tracesUrl: string;
  /** `service.name` of the spans. */
  readonly serviceName: string;
  readonly sampler: SamplerName;
  /** The ratio of the ratio samplers, 0..1 (1 for the others). */
  readonly samplerRatio: number;
  /** Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`). */
  readonly resourceAttributes: Readonly<Record<string, string>>;
  /** Extra HTTP headers of the exporter (`OTEL_EXPORTER_OTLP_HEADERS`, `…_TRACES_HEADERS`). */
  readonly headers: Readonly<Record<string, string>>;
}

const SAMPLERS: readonly string[] = Object.values(SamplerName);
const PROTOCOLS = ['http/protobuf'];

function nonEmpty(env: Environment, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

/** `k=v,k2=v2` with percent-encoded values (the OTel list format); problems are collected. */
function keyValueList(env: Environment, name: string, problems: string[]): Record<string, string> {
  const raw = nonEmpty(env, name);
  const entries: Record<string, string> = {};
  if (raw === undefined) return entries;
  for (const [index, part] of raw.split(',').entries()) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? '' : part.slice(0, eq).trim();
    if (key === '') {
      // Not quoted: a header often carries an API key, and a malformed entry is still one.
      problems.push(
        `${name}: entry ${index + 1} is not key=value (its text is not shown: it may hold a secret)`,
      );
      continue;
    }
    try {
      entries[key] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      problems.push(`${name}: the value of ${key} is not valid percent-encoding`);
    }
  }
  return entries;
}

function httpUrl(name: string, raw: string, problems: string[]): string | undefined {
  try {
    const url = new URL(raw);
    if (url.protocol === 'http:' || url.protocol === 'https:') return url.toString();
  } catch {
    // reported below
  }
  problems.push(`${name}=${withoutCredentials(raw)}: must be an http:// or https:// URL`);
  return undefined;
}

/**
 * A URL as logs may show it: the user and password of an endpoint (`https://user:key@host`)
 * replaced by `***`.
 */
export function withoutCredentials(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.username === '' && url.password === '') return raw;
    url.username = '***';
    url.password = '';
    return url.toString();
  } catch {
    return raw.replace(/\/\/[^/]*@/, '//***@');
  }
}

/**
 * Reads the standard OpenTelemetry variables of a service. Tracing is on only when an OTLP
 * endpoint is set (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, used as is, or
 * `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, e.g. Jaeger's `http://localhost:4318`) and neither
 * `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` says otherwise: undefined means off, and
 * off costs nothing. `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`) and
 * `OTEL_TRACES_SAMPLER_ARG` (the ratio, default 1) choose the sampling, decided once per run at
 * its start. Throws a ValidationError listing every problem.
 *
 * @example
 * const tracing = parseTracingConfig(env, { serviceName: 'orchestrator' });
 */
export function parseTracingConfig(
  env: Environment,
  defaults: { readonly serviceName: string },
): TracingConfig | undefined {
  const problems: string[] = [];
  const disabled = nonEmpty(env, 'OTEL_SDK_DISABLED')?.toLowerCase();
  if (disabled !== undefined && disabled !== 'true' && disabled !== 'false') {
    problems.push(`OTEL_SDK_DISABLED=${disabled}: must be true or false`);
  }
  const exporter = nonEmpty(env, 'OTEL_TRACES_EXPORTER')?.toLowerCase();
  if (exporter !== undefined && exporter !== 'otlp' && exporter !== 'none') {
    problems.push(`OTEL_TRACES_EXPORTER=${exporter}: must be otlp or none`);
  }
  const protocol =
    nonEmpty(env, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ?? nonEmpty(env, 'OTEL_EXPORTER_OTLP_PROTOCOL');
  if (protocol !== undefined && !PROTOCOLS.includes(protocol)) {
    problems.push(`OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL=${protocol}: only http/protobuf is supported`);
  }
  const tracesEndpoint = nonEmpty(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const endpoint = nonEmpty(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  let tracesUrl: string | undefined;
  if (tracesEndpoint !== undefined) {
    tracesUrl = httpUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', tracesEndpoint, problems);
  } else if (endpoint !== undefined) {
    const base = httpUrl('OTEL_EXPORTER_OTLP_ENDPOINT', endpoint, problems);
    if (base !== undefined) tracesUrl = `${base.replace(/\/+$/, '')}/v1/traces`;
  }
  const sampler = (nonEmpty(env, 'OTEL_TRACES_SAMPLER')?.toLowerCase() ??
    SamplerName.ParentBasedAlwaysOn) as SamplerName;
  if (!SAMPLERS.includes(sampler)) {
    problems.push(`OTEL_TRACES_SAMPLER=${sampler}: must be one of ${SAMPLERS.join(', ')}`);
  }
  const rawArg = nonEmpty(env, 'OTEL_TRACES_SAMPLER_ARG');
  let samplerRatio = 1;
  if (rawArg !== undefined) {
    samplerRatio = Number(rawArg);
    if (!(samplerRatio >= 0 && samplerRatio <= 1)) {
      problems.push(`OTEL_TRACES_SAMPLER_ARG=${rawArg}: must be a number from 0 to 1`);
    }
  }
  const resourceAttributes = keyValueList(env, 'OTEL_RESOURCE_ATTRIBUTES', problems);
  const headers = {
    ...keyValueList(env, 'OTEL_EXPORTER_OTLP_HEADERS', problems),
    ...keyValueList(env, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS', problems),
  };
  if (problems.length > 0) throw new ValidationError('invalid OpenTelemetry configuration', problems);
  if (disabled === 'true' || exporter === 'none' || tracesUrl === undefined) return undefined;
  return {
    tracesUrl,
    serviceName:
      nonEmpty(env, 'OTEL_SERVICE_NAME') ?? resourceAttributes['service.name'] ?? defaults.serviceName,
    sampler,
    samplerRatio,
    resourceAttributes,
    headers,
  };
}
