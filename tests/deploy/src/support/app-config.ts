import { join } from 'node:path';
import { ROOT } from './compose';

/** An app's config loader: `loadConfig(env)` by convention (STYLE.md: the only env reader). */
type LoadConfig = (env: NodeJS.ProcessEnv) => unknown;

/** The config module's loader of apps/<app>/src/config.ts: its exported `load…Config` function. */
export function configLoaderOf(app: string): LoadConfig {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the app is chosen at run time, and may not exist on every branch
  const module = require(join(ROOT, 'apps', app, 'src', 'config.ts')) as Record<string, unknown>;
  const loader = Object.entries(module).find(
    ([name, value]) => /^load\w*Config$/.test(name) && typeof value === 'function',
  );
  if (loader === undefined) throw new Error(`apps/${app}/src/config.ts exports no load…Config function`);
  return loader[1] as LoadConfig;
}

/** What one call of a config loader did with an environment. */
export interface ConfigReading {
  /** Every variable the loader looked up (read, or checked for presence). */
  readonly read: ReadonlySet<string>;
  /** The loader's problems when it refused the environment, else undefined. */
  readonly problems?: readonly string[];
}

/**
 * Runs the app's own config loader on `env` through a proxy that records every variable it looks
 * up: what it reads is what the code reads, with no list to keep in sync by hand.
 */
export function readConfig(app: string, env: Readonly<Record<string, string>>): ConfigReading {
  const read = new Set<string>();
  const proxy = new Proxy(
    { ...env },
    {
      get(target, key) {
        if (typeof key === 'string') read.add(key);
        return Reflect.get(target, key) as unknown;
      },
      has(target, key) {
        if (typeof key === 'string') read.add(key);
        return Reflect.has(target, key);
      },
    },
  );
  try {
    configLoaderOf(app)(proxy);
    return { read };
  } catch (err) {
    const problems = (err as { problems?: readonly string[] }).problems;
    if (!Array.isArray(problems)) throw err;
    return { read, problems };
  }
}

/**
 * The standard OpenTelemetry SDK variables (its environment specification). Tracing is configured
 * by them; the SDK reads them itself, so they may be set though no config module names them.
 */
export const OTEL_STANDARD_VARIABLES: ReadonlySet<string> = new Set([
  'OTEL_SDK_DISABLED',
  'OTEL_SERVICE_NAME',
  'OTEL_RESOURCE_ATTRIBUTES',
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_EXPORTER_OTLP_PROTOCOL',
  'OTEL_EXPORTER_OTLP_HEADERS',
  'OTEL_EXPORTER_OTLP_TIMEOUT',
  'OTEL_TRACES_EXPORTER',
  'OTEL_TRACES_SAMPLER',
  'OTEL_TRACES_SAMPLER_ARG',
  'OTEL_PROPAGATORS',
  'OTEL_METRICS_EXPORTER',
  'OTEL_LOGS_EXPORTER',
]);
