/** The parts of a Grafana dashboard JSON the checks read. */
export interface GrafanaDashboard {
  readonly uid: string;
  readonly title: string;
  readonly panels: readonly {
    readonly id: number;
    readonly title: string;
    readonly datasource: { readonly uid: string };
    readonly targets: readonly { readonly expr: string }[];
  }[];
  readonly templating?: {
    readonly list: readonly { readonly query?: string | { readonly query?: string } }[];
  };
}

/** Every PromQL expression of the dashboard: panel targets and template variable queries. */
export function dashboardQueries(dashboard: GrafanaDashboard): string[] {
  const variables = (dashboard.templating?.list ?? []).flatMap((v) => {
    const query = typeof v.query === 'string' ? v.query : v.query?.query;
    return query === undefined ? [] : [query];
  });
  return [...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)), ...variables];
}

/** The metric names a PromQL expression selects (ours all start with `multiagents_`). */
export function metricNamesOf(expr: string): string[] {
  // Label matchers and label names cannot start a selector; strip quoted strings first.
  const unquoted = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return [...new Set([...unquoted.matchAll(/\b(multiagents_[a-zA-Z0-9_:]*)/g)].map((m) => m[1] as string))];
}

/** A dashboard expression made runnable by Prometheus: Grafana's variables replaced. */
export function runnableQuery(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$workflow', '.*');
}
