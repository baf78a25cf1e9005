import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';

/** The root of this checkout. */
export const ROOT = resolve(__dirname, '..', '..', '..', '..');

/** The MultiAgents services of docker-compose.yml; each is the app of the same name in apps/. */
export const APP_SERVICES = ['orchestrator', 'worker-manager', 'metrics-collector', 'event-monitor'] as const;
/** One of {@link APP_SERVICES}. */
export type AppService = (typeof APP_SERVICES)[number];

/** The compose files: the default (Redis) one and the NATS override. */
export const COMPOSE_FILE = 'docker-compose.yml';
export const NATS_OVERRIDE_FILE = 'docker-compose.nats.yml';

/** A compose service, loosely typed: the JSON schema checks its shape. */
export interface ComposeService {
  readonly image?: string;
  readonly build?: { readonly context?: string; readonly dockerfile?: string; readonly target?: string };
  readonly command?: string | readonly string[];
  readonly environment?: Readonly<Record<string, string | number | boolean | null>>;
  readonly ports?: readonly (string | number)[];
  readonly volumes?: readonly string[];
  readonly depends_on?: Readonly<Record<string, { readonly condition?: string }>>;
  readonly healthcheck?: { readonly test?: readonly string[] | string; readonly disable?: boolean };
  readonly container_name?: string;
  readonly profiles?: readonly string[];
  readonly stop_grace_period?: string;
  readonly init?: boolean;
  readonly env_file?: readonly (string | { readonly path: string; readonly required?: boolean })[];
}

/** A compose document after YAML merge keys are resolved. */
export interface ComposeDocument {
  readonly services: Readonly<Record<string, ComposeService>>;
  readonly volumes?: Readonly<Record<string, unknown>>;
  readonly [key: string]: unknown;
}

/** The app directory's files exist (event-monitor is built on another branch: absent until merged). */
export function appExists(app: string): boolean {
  return existsSync(join(ROOT, 'apps', app, 'src', 'config.ts'));
}

/** A file of the checkout as text. */
export function readRepoFile(path: string): string {
  return readFileSync(join(ROOT, path), 'utf8');
}

/** A YAML file of the checkout, with `<<` merge keys resolved as Compose resolves them. */
export function readYaml<T>(path: string): T {
  return parse(readRepoFile(path), { merge: true }) as T;
}

const INTERPOLATION = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^}])*))?\}|\$\$/g;

/** Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$`, against `env`. */
export function interpolate(text: string, env: Readonly<Record<string, string>>): string {
  return text.replace(INTERPOLATION, (match: string, name?: string, op?: string, rawArg?: string): string => {
    const arg = rawArg ?? '';
    if (match === '$$') return '$';
    const value = env[name as string];
    switch (op) {
      case undefined:
        return value ?? '';
      case ':-':
        return value === undefined || value === '' ? arg : value;
      case '-':
        return value ?? arg;
      case ':?':
      case '?':
        if (value === undefined) throw new Error(`${name} is required: ${arg}`);
        return value;
      default:
        return value === undefined || value === '' ? '' : arg;
    }
  });
}

/** Every `${VAR…}` a compose file uses. */
export function interpolatedVariables(text: string): string[] {
  return [...text.matchAll(INTERPOLATION)].flatMap((m) => (m[1] === undefined ? [] : [m[1]]));
}

function interpolateDeep(value: unknown, env: Readonly<Record<string, string>>): unknown {
  if (typeof value === 'string') return interpolate(value, env);
  if (Array.isArray(value)) return value.map((v) => interpolateDeep(v, env));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolateDeep(v, env)]));
  }
  return value;
}

/** A compose file with merge keys resolved and variables interpolated from `env` (defaults: none set). */
export function loadCompose(path: string, env: Readonly<Record<string, string>> = {}): ComposeDocument {
  return interpolateDeep(readYaml<unknown>(path), env) as ComposeDocument;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Compose's merge of an override file: mappings (environment, depends_on, healthcheck…) merge key
 * by key, sequences and scalars are replaced (ports and volumes are merged by compose too, but the
 * override files here set neither).
 */
export function mergeCompose(base: ComposeDocument, override: ComposeDocument): ComposeDocument {
  const merge = (a: unknown, b: unknown): unknown => {
    if (isObject(a) && isObject(b)) {
      const out: Record<string, unknown> = { ...a };
      for (const [key, value] of Object.entries(b)) out[key] = merge(a[key], value);
      return out;
    }
    return b === undefined ? a : b;
  };
  return merge(base, override) as ComposeDocument;
}

/** A service's environment as strings, the way the container sees it. */
export function environmentOf(service: ComposeService): Record<string, string> {
  return Object.fromEntries(
    Object.entries(service.environment ?? {})
      .filter(([, value]) => value !== null)
      .map(([key, value]) => [key, String(value)]),
  );
}

/** The JSON Schema of the Compose Specification, as dclint ships it (nothing is downloaded). */
export function composeSchemaPath(): string {
  return join(resolve(require.resolve('dclint/package.json'), '..'), 'schemas', 'compose.schema.json');
}
