import { Counter, Gauge, Histogram, Registry, type OpenMetricsContentType } from 'prom-client';
import { ExpositionFormat, negotiateFormat, renderExposition } from './exposition';

function registry(): Registry<OpenMetricsContentType> {
  const r = new Registry<OpenMetricsContentType>();
  r.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  return r;
}

describe('negotiateFormat', () => {
  it("serves OpenMetrics when the scraper prefers it, as Prometheus' Accept header does", () => {
    expect(
      negotiateFormat(
        'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1',
      ),
    ).toBe(ExpositionFormat.OpenMetrics);
    expect(negotiateFormat(undefined)).toBe(ExpositionFormat.Prometheus);
    expect(negotiateFormat('text/plain')).toBe(ExpositionFormat.Prometheus);
    expect(negotiateFormat('*/*')).toBe(ExpositionFormat.Prometheus);
    expect(negotiateFormat('text/plain;q=1,application/openmetrics-text;q=0.5')).toBe(
      ExpositionFormat.Prometheus,
    );
    expect(negotiateFormat('application/openmetrics-text;q=0')).toBe(ExpositionFormat.Prometheus);
  });
});

describe('renderExposition', () => {
  const build = (): Registry<OpenMetricsContentType> => {
    const r = registry();
    const counter = new Counter({
      name: 'x_things_total',
      help: 'Things "quoted"\nand \\ escaped.',
      labelNames: ['kind'],
      registers: [r],
      enableExemplars: true,
    });
    counter.inc({
      labels: { kind: 'a"b' },
      value: 2,
      exemplarLabels: { trace_id: 'abc' } as Record<string, string>,
    });
    const histogram = new Histogram({
      name: 'x_wait_seconds',
      help: 'Waits.',
      buckets: [0.1, 1],
      registers: [r],
      enableExemplars: true,
    });
    histogram.observe({ value: 0.5, exemplarLabels: { trace_id: 'def' } });
    histogram.observe({ value: 5 });
    new Gauge({ name: 'x_build_info', help: 'Build.', labelNames: ['version'], registers: [r] }).set(
      { version: '1' },
      1,
    );
    return r;
  };

  it('writes the classic text format: _total counters, no exemplars, no EOF', async () => {
    const text = await renderExposition(build(), ExpositionFormat.Prometheus);
    expect(text).toBe(
      [
        '# HELP x_things_total Things "quoted"\\nand \\\\ escaped.',
        '# TYPE x_things_total counter',
        'x_things_total{kind="a\\"b"} 2',
        '# HELP x_wait_seconds Waits.',
        '# TYPE x_wait_seconds histogram',
        'x_wait_seconds_bucket{le="0.1"} 0',
        'x_wait_seconds_bucket{le="1"} 1',
        'x_wait_seconds_bucket{le="+Inf"} 2',
        'x_wait_seconds_sum 5.5',
        'x_wait_seconds_count 2',
        '# HELP x_build_info Build.',
        '# TYPE x_build_info gauge',
        'x_build_info{version="1"} 1',
        '',
      ].join('\n'),
    );
  });

  it('writes OpenMetrics: families, units, info, exemplars on counters and buckets, EOF; and the classic format again after it', async () => {
    const r = build();
    const text = await renderExposition(r, ExpositionFormat.OpenMetrics);
    const lines = text.split('\n');
    expect(lines.slice(0, 4)).toEqual([
      '# TYPE x_things counter',
      '# HELP x_things Things \\"quoted\\"\\nand \\\\ escaped.',
      expect.stringMatching(/^x_things_total\{kind="a\\"b"\} 2 # \{trace_id="abc"\} 2 \d+(\.\d+)?$/),
      '# TYPE x_wait_seconds histogram',
    ]);
    expect(lines).toContain('# UNIT x_wait_seconds seconds');
    expect(lines.find((l) => l.startsWith('x_wait_seconds_bucket{le="1"}'))).toMatch(
      /^x_wait_seconds_bucket\{le="1"\} 1 # \{trace_id="def"\} 0.5 \d+/,
    );
    expect(lines.find((l) => l.startsWith('x_wait_seconds_sum'))).toBe('x_wait_seconds_sum 5.5');
    expect(lines.slice(-5)).toEqual([
      '# TYPE x_build info',
      '# HELP x_build Build.',
      'x_build_info{version="1"} 1',
      '# EOF',
      '',
    ]);
    // prom-client's own OpenMetrics renderer renames counters in place; this one leaves them be.
    expect(await renderExposition(r, ExpositionFormat.Prometheus)).toContain(
      'x_things_total{kind="a\\"b"} 2\n',
    );
  });
});
