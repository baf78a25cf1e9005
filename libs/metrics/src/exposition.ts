import type { Registry, RegistryContentType } from 'prom-client';

/** The two text formats `/metrics` serves. */
export const ExpositionFormat = {
  /** Prometheus text format 0.0.4: what scrapers without OpenMetrics support ask for. */
  Prometheus: 'prometheus',
  /** OpenMetrics 1.0.0: exemplars, `# UNIT`, `# EOF`. */
  OpenMetrics: 'openmetrics',
} as const;
/** One of {@link ExpositionFormat}'s values. */
export type ExpositionFormat = (typeof ExpositionFormat)[keyof typeof ExpositionFormat];

/** The Content-Type of each format. */
export const EXPOSITION_CONTENT_TYPES: Readonly<Record<ExpositionFormat, string>> = {
  prometheus: 'text/plain; version=0.0.4; charset=utf-8',
  openmetrics: 'application/openmetrics-text; version=1.0.0; charset=utf-8',
};

/**
 * The format an `Accept` header asks for: OpenMetrics when it names
 * `application/openmetrics-text` with a quality at least that of `text/plain` (Prometheus sends
 * both, OpenMetrics first), else the classic text format.
 */
export function negotiateFormat(accept: string | undefined): ExpositionFormat {
  if (accept === undefined) return ExpositionFormat.Prometheus;
  let openMetrics = 0;
  let text = 0;
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';').map((part) => part.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    if (!Number.isFinite(q)) continue;
    if (type === 'application/openmetrics-text') openMetrics = Math.max(openMetrics, q);
    else if (type === 'text/plain' || type === '*/*' || type === 'text/*') text = Math.max(text, q);
  }
  return openMetrics > 0 && openMetrics >= text ? ExpositionFormat.OpenMetrics : ExpositionFormat.Prometheus;
}

/** One sample as prom-client's `get()` hands it out. */
interface Sample {
  readonly value: number;
  readonly labels?: Readonly<Record<string, string | number>>;
  readonly metricName?: string;
  readonly exemplar?: {
    readonly labelSet: Readonly<Record<string, string | number>>;
    readonly value: number | null;
    readonly timestamp?: number;
  } | null;
}

/** One metric family as prom-client's `get()` hands it out. */
interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly values?: readonly Sample[];
}

/**
 * Renders every metric of `registry` in `format`. prom-client's own renderer is not used: in
 * OpenMetrics mode it renames counters in place (dropping `_total` for good, so a later classic
 * scrape would break), and it cannot serve both formats from one registry. Gauges named `*_info`
 * with OpenMetrics become the `info` type; families whose name ends in `_seconds` or `_bytes` get
 * their `# UNIT`; exemplars are written only in OpenMetrics, on counters and histogram buckets.
 */
export async function renderExposition(
  registry: Pick<Registry<RegistryContentType>, 'getMetricsAsArray'>,
  format: ExpositionFormat,
): Promise<string> {
  // Each metric object has `get()` (it runs the metric's collect function); the typings omit it.
  const metrics = registry.getMetricsAsArray() as unknown as { get(): Promise<Family> }[];
  const families = await Promise.all(metrics.map((m) => m.get()));
  const lines: string[] = [];
  for (const family of families) {
    if (format === ExpositionFormat.OpenMetrics) writeOpenMetricsFamily(lines, family);
    else writePrometheusFamily(lines, family);
  }
  if (format === ExpositionFormat.OpenMetrics) lines.push('# EOF');
  return `${lines.join('\n')}\n`;
}

function writePrometheusFamily(lines: string[], family: Family): void {
  lines.push(`# HELP ${family.name} ${escapeHelp(family.help, false)}`);
  lines.push(`# TYPE ${family.name} ${family.type}`);
  for (const sample of family.values ?? []) {
    lines.push(
      `${sample.metricName ?? family.name}${formatLabels(sample.labels)} ${formatValue(sample.value)}`,
    );
  }
}

function writeOpenMetricsFamily(lines: string[], family: Family): void {
  let name = family.name;
  let type = family.type;
  let suffix = '';
  if (type === 'counter') {
    name = name.endsWith('_total') ? name.slice(0, -'_total'.length) : name;
    suffix = '_total';
  } else if (type === 'gauge' && name.endsWith('_info')) {
    name = name.slice(0, -'_info'.length);
    type = 'info';
    suffix = '_info';
  }
  lines.push(`# TYPE ${name} ${type}`);
  const unit = /_(seconds|bytes)$/.exec(name)?.[1];
  if (unit !== undefined) lines.push(`# UNIT ${name} ${unit}`);
  lines.push(`# HELP ${name} ${escapeHelp(family.help, true)}`);
  for (const sample of family.values ?? []) {
    const sampleName = sample.metricName ?? `${name}${suffix}`;
    let line = `${sampleName}${formatLabels(sample.labels)} ${formatValue(sample.value)}`;
    const exemplar = sample.exemplar;
    const exemplarAllowed = type === 'counter' || sampleName.endsWith('_bucket');
    if (exemplarAllowed && exemplar && exemplar.value !== null && Object.keys(exemplar.labelSet).length > 0) {
      line += ` # ${formatLabels(exemplar.labelSet)} ${formatValue(exemplar.value)}`;
      if (exemplar.timestamp !== undefined) line += ` ${exemplar.timestamp}`;
    }
    lines.push(line);
  }
}

function formatLabels(labels: Readonly<Record<string, string | number>> | undefined): string {
  if (labels === undefined) return '';
  const parts: string[] = [];
  for (const key in labels) {
    const value = labels[key];
    if (value === undefined) continue;
    parts.push(`${key}="${escapeLabelValue(typeof value === 'number' ? formatValue(value) : value)}"`);
  }
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(help: string, quotes: boolean): string {
  const escaped = help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  return quotes ? escaped.replace(/"/g, '\\"') : escaped;
}
