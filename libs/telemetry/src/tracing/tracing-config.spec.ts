import { ValidationError } from '@multiagents/contracts';
import { formatTraceHeaders, isSampled, parseTraceHeaders } from './trace-context';
import { parseTracingConfig, withoutCredentials } from './tracing-config';

const defaults = { serviceName: 'orchestrator' };

describe('parseTracingConfig', () => {
  it('is off (undefined) when no endpoint is set, or when the SDK or the exporter is switched off', () => {
    expect(parseTracingConfig({}, defaults)).toBeUndefined();
    expect(
      parseTracingConfig({ OTEL_SERVICE_NAME: 'x', OTEL_TRACES_SAMPLER: 'always_on' }, defaults),
    ).toBeUndefined();
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' };
    expect(parseTracingConfig({ ...endpoint, OTEL_SDK_DISABLED: 'true' }, defaults)).toBeUndefined();
    expect(parseTracingConfig({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' }, defaults)).toBeUndefined();
  });

  it('reads the endpoint, service name, sampler and headers', () => {
    expect(
      parseTracingConfig(
        {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318/',
          OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
          OTEL_TRACES_SAMPLER_ARG: '0.1',
          OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc',
          OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod',
        },
        defaults,
      ),
    ).toEqual({
      tracesUrl: 'http://jaeger:4318/v1/traces',
      serviceName: 'orchestrator',
      sampler: 'parentbased_traceidratio',
      samplerRatio: 0.1,
      headers: { authorization: 'Bearer abc' },
      resourceAttributes: { 'deployment.environment': 'prod' },
    });
    const traces = parseTracingConfig(
      {
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://ignored:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://collector/custom/path',
        OTEL_SERVICE_NAME: 'orders-orchestrator',
      },
      defaults,
    );
    expect(traces?.tracesUrl).toBe('https://collector/custom/path');
    expect(traces?.serviceName).toBe('orders-orchestrator');
    expect(traces?.sampler).toBe('parentbased_always_on');
  });

  it('lists every problem at once', () => {
    let error: unknown;
    try {
      parseTracingConfig(
        {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'jaeger:4318',
          OTEL_TRACES_SAMPLER: 'sometimes',
          OTEL_TRACES_SAMPLER_ARG: '2',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
          OTEL_SDK_DISABLED: 'maybe',
        },
        defaults,
      );
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    const problems = (error as ValidationError).problems.join('\n');
    for (const name of [
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'OTEL_TRACES_SAMPLER=',
      'OTEL_TRACES_SAMPLER_ARG',
      'PROTOCOL',
      'OTEL_SDK_DISABLED',
    ]) {
      expect(problems).toContain(name);
    }
  });

  it('never quotes a secret in a problem: a malformed header, an endpoint with credentials', () => {
    let error: unknown;
    try {
      parseTracingConfig(
        {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://user:s3cr3t-key@collector:4318',
          OTEL_EXPORTER_OTLP_HEADERS: 'api-key:XYZ-SECRET',
        },
        defaults,
      );
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    const problems = (error as ValidationError).problems.join('\n');
    expect(problems).toContain('OTEL_EXPORTER_OTLP_HEADERS: entry 1 is not key=value');
    expect(problems).toContain('OTEL_EXPORTER_OTLP_ENDPOINT=ftp://***@collector:4318');
    expect(problems).not.toMatch(/XYZ-SECRET|s3cr3t-key/);
    expect(withoutCredentials('https://user:key@otlp.example:4318/v1/traces')).toBe(
      'https://***@otlp.example:4318/v1/traces',
    );
    expect(withoutCredentials('http://jaeger:4318/v1/traces')).toBe('http://jaeger:4318/v1/traces');
  });
});

describe('trace headers', () => {
  const sampled = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

  it('tells sampled from unsampled without parsing', () => {
    expect(isSampled({ traceparent: sampled })).toBe(true);
    expect(isSampled({ traceparent: sampled.replace(/01$/, '00') })).toBe(false);
    expect(isSampled({ traceparent: sampled.replace(/01$/, '03') })).toBe(true);
    expect(isSampled({ traceparent: sampled.replace(/01$/, '0b') })).toBe(true);
    expect(isSampled({ traceparent: sampled.replace(/01$/, '0a') })).toBe(false);
    expect(isSampled({})).toBe(false);
    expect(isSampled(undefined)).toBe(false);
  });

  it('parses and formats traceparent and tracestate, refusing malformed or all-zero ids', () => {
    const context = parseTraceHeaders({ traceparent: sampled, tracestate: 'vendor=x' });
    expect(context).toMatchObject({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: 1,
    });
    expect(formatTraceHeaders(context as NonNullable<typeof context>)).toEqual({
      traceparent: sampled,
      tracestate: 'vendor=x',
    });
    expect(parseTraceHeaders({ traceparent: 'garbage' })).toBeUndefined();
    expect(parseTraceHeaders({ traceparent: `00-${'0'.repeat(32)}-b7ad6b7169203331-01` })).toBeUndefined();
  });
});
