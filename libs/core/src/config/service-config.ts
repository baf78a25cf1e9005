import { ValidationError } from '@multiagents/contracts';

/** The backends (SPEC §1). */
export const Backend = { Memory: 'memory', Redis: 'redis', Nats: 'nats' } as const;
/** One of {@link Backend}'s values. */
export type Backend = (typeof Backend)[keyof typeof Backend];

/** Settings every service shares (SPEC §7). */
export interface ServiceConfig {
  readonly backend: Backend;
  readonly redisUrl?: string;
  readonly natsUrl?: string;
  readonly prefix: string;
  readonly grpcPort: number;
  /** Health (and later metrics) over HTTP; 0 means a free port, undefined means off. */
  readonly httpPort?: number;
  readonly logLevel: string;
}

/** An environment as an app passes it (its own variables); libraries never read the environment. */
export type Environment = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const PREFIX = /^[A-Za-z0-9_-]{1,64}$/;

function port(env: Environment, name: string, problems: string[], fallback?: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65_535) {
    problems.push(`${name}=${raw}: must be a port number from 0 to 65535`);
    return fallback;
  }
  return value;
}

function url(
  env: Environment,
  name: string,
  protocols: readonly string[],
  problems: string[],
): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') {
    problems.push(`${name} is required for this backend`);
    return undefined;
  }
  for (const part of raw.split(',')) {
    let parsed: URL;
    try {
      parsed = new URL(part.trim());
    } catch {
      problems.push(`${name}=${raw}: "${part}" is not a URL`);
      continue;
    }
    if (!protocols.includes(parsed.protocol)) {
      problems.push(`${name}=${raw}: protocol must be one of ${protocols.join(' ')}`);
    }
  }
  return raw;
}

/**
 * Reads the shared service settings from an environment, checking everything and reporting every
 * problem at once (a ValidationError), so a misconfigured service stops at start.
 */
export function parseServiceConfig(env: Environment, defaults: { grpcPort: number }): ServiceConfig {
  const problems: string[] = [];
  const backend = (env['MULTIAGENTS_BACKEND'] || Backend.Memory) as Backend;
  if (!Object.values(Backend).includes(backend)) {
    problems.push(`MULTIAGENTS_BACKEND=${backend}: must be one of memory, redis, nats`);
  }
  const redisUrl =
    backend === Backend.Redis ? url(env, 'REDIS_URL', ['redis:', 'rediss:'], problems) : undefined;
  const natsUrl =
    backend === Backend.Nats ? url(env, 'NATS_URL', ['nats:', 'tls:', 'ws:', 'wss:'], problems) : undefined;
  const prefix = env['MULTIAGENTS_PREFIX'] || 'multiagents';
  if (!PREFIX.test(prefix)) problems.push(`MULTIAGENTS_PREFIX=${prefix}: must match ${PREFIX.source}`);
  const grpcPort = port(env, 'GRPC_PORT', problems, defaults.grpcPort) as number;
  const httpPort = port(env, 'HTTP_PORT', problems);
  const logLevel = env['LOG_LEVEL'] || 'info';
  if (!LOG_LEVELS.includes(logLevel))
    problems.push(`LOG_LEVEL=${logLevel}: must be one of ${LOG_LEVELS.join(', ')}`);
  if (problems.length > 0) throw new ValidationError('invalid configuration', problems);
  return {
    backend,
    ...(redisUrl === undefined ? {} : { redisUrl }),
    ...(natsUrl === undefined ? {} : { natsUrl }),
    prefix,
    grpcPort,
    ...(httpPort === undefined ? {} : { httpPort }),
    logLevel,
  };
}

/** A comma-separated list variable, trimmed, empties dropped. */
export function listVariable(env: Environment, name: string): string[] {
  return (env[name] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
