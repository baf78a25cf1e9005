/** One sample of a Prometheus or OpenMetrics text exposition. */
export interface MetricSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  /** The OpenMetrics exemplar after ` # `, when the sample has one. */
  readonly exemplar?: { readonly labels: Readonly<Record<string, string>>; readonly value: number };
}

/** Reads `{a="x",b="y"}` from `text` at `start` (the `{`); returns the labels and the index after `}`. */
function readLabels(text: string, start: number): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  let i = start + 1;
  while (text[i] !== '}') {
    const eq = text.indexOf('=', i);
    const name = text.slice(i, eq).trim();
    i = eq + 2; // past `="`
    let value = '';
    while (text[i] !== '"') {
      if (text[i] === '\\') {
        const next = text[i + 1];
        value += next === 'n' ? '\n' : (next ?? '');
        i += 2;
      } else {
        value += text[i];
        i += 1;
      }
    }
    labels[name] = value;
    i += 1; // past the closing quote
    if (text[i] === ',') i += 1;
  }
  return [labels, i + 1];
}

function readNumber(token: string | undefined): number {
  if (token === '+Inf') return Number.POSITIVE_INFINITY;
  if (token === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(token);
}

/**
 * Parses a text exposition (Prometheus 0.0.4 or OpenMetrics 1.0) into samples, comments skipped:
 * enough for tests to read what a `/metrics` endpoint serves. Throws on a line it cannot read.
 */
export function parseMetricsText(text: string): MetricSample[] {
  const samples: MetricSample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    let name: string;
    let labels: Record<string, string> = {};
    let rest: string;
    if (brace !== -1 && brace < space) {
      name = line.slice(0, brace);
      const [parsed, end] = readLabels(line, brace);
      labels = parsed;
      rest = line.slice(end).trim();
    } else {
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const [sample, exemplarText] = rest.split(' # ') as [string, string | undefined];
    const value = readNumber(sample.split(' ')[0]);
    if (name === '' || (Number.isNaN(value) && sample.split(' ')[0] !== 'NaN')) {
      throw new Error(`cannot read metrics line: ${line}`);
    }
    let exemplar: MetricSample['exemplar'];
    if (exemplarText !== undefined) {
      const [exemplarLabels, end] = readLabels(exemplarText, exemplarText.indexOf('{'));
      exemplar = { labels: exemplarLabels, value: readNumber(exemplarText.slice(end).trim().split(' ')[0]) };
    }
    samples.push({ name, labels, value, ...(exemplar ? { exemplar } : {}) });
  }
  return samples;
}

/** The samples named `name` whose labels include `labels`. */
export function findSamples(
  samples: readonly MetricSample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): MetricSample[] {
  return samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([key, value]) => s.labels[key] === value),
  );
}

/** The sum of the samples {@link findSamples} returns (0 when there is none). */
export function sumSamples(
  samples: readonly MetricSample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  return findSamples(samples, name, labels).reduce((sum, s) => sum + s.value, 0);
}
