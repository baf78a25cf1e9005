import type { NatsConnection } from '@nats-io/transport-node';

/**
 * Where the NATS stores keep their data; shared by the state, timer and definition stores.
 * Give either `servers` (the store opens, reconnects and closes its own connection) or
 * `connection` (one the application owns: the store never closes it).
 */
export interface NatsStoreOptions {
  /** NATS server URL(s), e.g. `nats://127.0.0.1:4222`. */
  readonly servers?: string | readonly string[];
  /** An open connection to use instead of opening one. */
  readonly connection?: NatsConnection;
  /** Namespace: every bucket is named `<prefix>-<role>` (letters, digits, `_`, `-`). */
  readonly prefix?: string;
  /** Replicas of every bucket (1 to 5; JetStream's limit): 3 survives the loss of one server of a cluster. */
  readonly replicas?: number;
  /**
   * Longest wait for one KV operation (and for connecting). During an outage operations reject
   * after this long instead of hanging; the connection keeps reconnecting in the background.
   */
  readonly requestTimeoutMs?: number;
}

/** {@link NatsStoreOptions} after defaults and validation. */
export interface ResolvedNatsStoreOptions {
  readonly servers: readonly string[] | undefined;
  readonly connection: NatsConnection | undefined;
  readonly prefix: string;
  readonly replicas: number;
  readonly requestTimeoutMs: number;
}

/** Defaults of {@link NatsStoreOptions}. */
export const DEFAULT_NATS_STORE_OPTIONS = Object.freeze({
  prefix: 'multiagents',
  replicas: 1,
  requestTimeoutMs: 5_000,
});

/** The option names {@link resolveNatsStoreOptions} knows, for stores that check unknown keys. */
export const NATS_STORE_OPTION_KEYS: readonly string[] = [
  'servers',
  'connection',
  'prefix',
  'replicas',
  'requestTimeoutMs',
];

const PREFIX = /^[A-Za-z0-9_-]{1,64}$/;

/** A short rendering of a bad value for an error message (never a whole, possibly secret, value). */
export function describeValue(value: unknown): string {
  if (typeof value === 'string')
    return value.length > 40 ? `${JSON.stringify(value.slice(0, 40))}…` : JSON.stringify(value);
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** Appends a problem unless `value` is a positive safe integer. */
export function checkPositiveInteger(value: unknown, label: string, problems: string[]): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0)
    problems.push(`${label} must be a positive integer (got ${describeValue(value)})`);
}

/**
 * Applies {@link DEFAULT_NATS_STORE_OPTIONS}, appends every problem found to `problems` (with
 * those of the caller's own options, so all are reported at once) and checks that no key outside
 * `knownKeys` was given (a misspelt option would otherwise be silently ignored).
 */
export function resolveNatsStoreOptions(
  options: NatsStoreOptions,
  knownKeys: readonly string[],
  problems: string[],
): ResolvedNatsStoreOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    problems.push(`options must be an object (got ${describeValue(options)})`);
    return { ...DEFAULT_NATS_STORE_OPTIONS, servers: undefined, connection: undefined };
  }
  for (const key of Object.keys(options)) {
    if (!knownKeys.includes(key)) problems.push(`unknown option "${key}"`);
  }

  let servers: readonly string[] | undefined;
  const given: unknown = options.servers;
  if (given !== undefined) {
    const list: unknown[] = typeof given === 'string' ? given.split(',') : Array.isArray(given) ? given : [];
    if (list.length === 0 || !list.every((s) => typeof s === 'string' && s.trim() !== '')) {
      problems.push(`servers must be a URL or a non-empty list of URLs (got ${describeValue(given)})`);
    } else {
      servers = list.map((s) => (s as string).trim());
    }
  }
  const connection = options.connection;
  if (connection !== undefined && (typeof connection !== 'object' || connection === null)) {
    problems.push(`connection must be a NatsConnection (got ${describeValue(connection)})`);
  }
  if (given === undefined && connection === undefined)
    problems.push('one of servers or connection is required');
  if (given !== undefined && connection !== undefined) problems.push('give servers or connection, not both');

  const prefix = options.prefix ?? DEFAULT_NATS_STORE_OPTIONS.prefix;
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    problems.push(`prefix must be 1-64 letters, digits, "_" or "-" (got ${describeValue(prefix)})`);
  }
  const replicas = options.replicas ?? DEFAULT_NATS_STORE_OPTIONS.replicas;
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    problems.push(`replicas must be an integer from 1 to 5 (got ${describeValue(replicas)})`);
  }
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_NATS_STORE_OPTIONS.requestTimeoutMs;
  checkPositiveInteger(requestTimeoutMs, 'requestTimeoutMs', problems);

  return { servers, connection, prefix, replicas, requestTimeoutMs };
}
