import { findSamples, parseMetricsText, sumSamples } from './metrics-text';

describe('parseMetricsText', () => {
  it('reads samples, escaped label values and OpenMetrics exemplars, and skips comments', () => {
    const samples = parseMetricsText(
      [
        '# TYPE a counter',
        'a_total{w="x",s="q\\"uote\\\\d"} 3 # {trace_id="abc"} 1 1700000000.5',
        'b 2.5',
        'h_bucket{le="+Inf"} 7',
        '# EOF',
        '',
      ].join('\n'),
    );
    expect(samples).toEqual([
      {
        name: 'a_total',
        labels: { w: 'x', s: 'q"uote\\d' },
        value: 3,
        exemplar: { labels: { trace_id: 'abc' }, value: 1 },
      },
      { name: 'b', labels: {}, value: 2.5 },
      { name: 'h_bucket', labels: { le: '+Inf' }, value: 7 },
    ]);
    expect(findSamples(samples, 'a_total', { w: 'x' })).toHaveLength(1);
    expect(sumSamples(samples, 'a_total', { w: 'y' })).toBe(0);
    expect(() => parseMetricsText('c notanumber')).toThrow('cannot read');
  });
});
