import {
  parseKeyRing,
  ValidationError,
  type EnvelopeCodecOptions,
  type KeyRing,
} from '@multiagents/contracts';
import type { Environment } from '@multiagents/core';
import type { NatsCredentials } from '@multiagents/nats';
import { existsSync, readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { maskUrl } from './startup';

export type { Environment };

/** The backends (SPEC §1). */
export const Backend = { Memory: 'memory', Redis: 'redis', Nats: 'nats' } as const;
/** One of {@link Backend}'s values. */
export type Backend = (typeof Backend)[keyof typeof Backend];

/** Settings every service shares (SPEC §7). */
export interface ServiceConfig {
  readonly backend: Backend;
  /** One address, or (Redis Cluster) several comma-separated seed nodes. */
  readonly redisUrl?: string;
  /**
   * Redis Cluster clients (several seeds in REDIS_URL, or MULTIAGENTS_REDIS_CLUSTER=true): every
   * seed is tried, and the cluster's own node list is used from then on.
   */
  readonly redisCluster?: boolean;
  /** Every seed server of the NATS cluster (comma-separated); the client connects to any. */
  readonly natsUrl?: string;
  /**
   * Redis partitions (MULTIAGENTS_REDIS_PARTITIONS): runs spread over this many hash tags. Unset:
   * the count recorded for the prefix, else 1 on one server and a multiple of the masters on a
   * cluster.
   */
  readonly redisPartitions?: number;
  /**
   * Replicas of every JetStream stream and KV bucket (MULTIAGENTS_NATS_REPLICAS, 1 to 5): checked
   * against the cluster's size at start.
   */
  readonly natsReplicas?: number;
  readonly prefix: string;
  readonly grpcPort: number;
  /** Health (and later metrics) over HTTP; 0 means a free port, undefined means off. */
  readonly httpPort?: number;
  readonly logLevel: string;
  /**
   * Envelope signatures (MULTIAGENTS_BUS_SIGNING_KEY, MULTIAGENTS_BUS_VERIFICATION_KEYS): what this
   * service publishes is signed with its key, and what it consumes must carry a signature by one of
   * the verification keys, checked before anything is parsed. Unset: the bus is unsigned.
   */
  readonly busCodec?: EnvelopeCodecOptions;
  /**
   * MULTIAGENTS_PAYLOAD_KEYS_WRAPPED with MULTIAGENTS_KMS_MODULE: the payload keys as a KMS
   * wrapped (encrypted) them, unwrapped by the module when the backend opens, so the plaintext
   * keys live in the service's memory only (see {@link KmsModule}).
   */
  readonly wrappedPayloadKeys?: WrappedPayloadKeys;
  /**
   * MULTIAGENTS_PAYLOAD_ACCEPT_PLAINTEXT=true: with payload keys, values found in plaintext at rest
   * are read as data written before encryption was turned on, instead of refused (see
   * SealingOptions).
   */
  readonly acceptPlaintextAtRest?: boolean;
  /** Redis ACL user, password and TLS files (REDIS_USERNAME, REDIS_PASSWORD, REDIS_TLS_*). */
  readonly redisCredentials?: RedisCredentials;
  /** NATS user/password, token, NKey seed or creds file, and TLS files (NATS_*). */
  readonly natsCredentials?: NatsCredentials;
}

/** Redis credentials beside (or instead of) those in REDIS_URL; TLS files need a `rediss://` URL. */
export interface RedisCredentials {
  readonly username?: string;
  readonly password?: string;
  readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string };
}

/** The broker credential variables, for the README and the compose check. */
export const BROKER_CREDENTIAL_VARIABLES = Object.freeze([
  'REDIS_USERNAME',
  'REDIS_PASSWORD',
  'REDIS_TLS_CA',
  'REDIS_TLS_CERT',
  'REDIS_TLS_KEY',
  'NATS_USER',
  'NATS_PASSWORD',
  'NATS_TOKEN',
  'NATS_NKEY_SEED_FILE',
  'NATS_CREDS_FILE',
  'NATS_TLS_CA',
  'NATS_TLS_CERT',
  'NATS_TLS_KEY',
]);

function value(env: Environment, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw === '' ? undefined : raw;
}

function file(env: Environment, name: string, problems: string[]): string | undefined {
  const path = value(env, name);
  if (path !== undefined && !existsSync(path)) problems.push(`${name}=${path}: no such file`);
  return path;
}

function tlsFiles(
  env: Environment,
  names: readonly [string, string, string],
  problems: string[],
): { caFile?: string; certFile?: string; keyFile?: string } | undefined {
  const [caFile, certFile, keyFile] = names.map((name) => file(env, name, problems));
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.push(`${names[1]} and ${names[2]} go together (a client certificate and its key)`);
  }
  if (caFile === undefined && certFile === undefined && keyFile === undefined) return undefined;
  return {
    ...(caFile === undefined ? {} : { caFile }),
    ...(certFile === undefined ? {} : { certFile }),
    ...(keyFile === undefined ? {} : { keyFile }),
  };
}

/**
 * Reads the broker credentials of the chosen backend (see {@link BROKER_CREDENTIAL_VARIABLES}).
 * Secrets (passwords, tokens, seeds) never appear in problems; files must exist.
 */
export function parseBrokerCredentials(
  env: Environment,
  backend: Backend,
  problems: string[],
): Pick<ServiceConfig, 'redisCredentials' | 'natsCredentials'> {
  if (backend === Backend.Redis) {
    const username = value(env, 'REDIS_USERNAME');
    const password = value(env, 'REDIS_PASSWORD');
    if (username !== undefined && password === undefined) {
      problems.push('REDIS_USERNAME needs REDIS_PASSWORD');
    }
    const tls = tlsFiles(env, ['REDIS_TLS_CA', 'REDIS_TLS_CERT', 'REDIS_TLS_KEY'], problems);
    if (tls !== undefined && !(env['REDIS_URL'] ?? '').trim().startsWith('rediss://')) {
      problems.push('REDIS_TLS_CA, REDIS_TLS_CERT and REDIS_TLS_KEY need a rediss:// REDIS_URL');
    }
    if (username === undefined && password === undefined && tls === undefined) return {};
    return {
      redisCredentials: {
        ...(username === undefined ? {} : { username }),
        ...(password === undefined ? {} : { password }),
        ...(tls === undefined ? {} : { tls }),
      },
    };
  }
  if (backend === Backend.Nats) {
    const user = value(env, 'NATS_USER');
    const pass = value(env, 'NATS_PASSWORD');
    const token = value(env, 'NATS_TOKEN');
    const seedFile = file(env, 'NATS_NKEY_SEED_FILE', problems);
    const credsFile = file(env, 'NATS_CREDS_FILE', problems);
    const tls = tlsFiles(env, ['NATS_TLS_CA', 'NATS_TLS_CERT', 'NATS_TLS_KEY'], problems);
    if ((user === undefined) !== (pass === undefined))
      problems.push('NATS_USER and NATS_PASSWORD go together');
    const given = [
      user === undefined ? undefined : 'NATS_USER',
      token === undefined ? undefined : 'NATS_TOKEN',
      seedFile === undefined ? undefined : 'NATS_NKEY_SEED_FILE',
      credsFile === undefined ? undefined : 'NATS_CREDS_FILE',
    ].filter((name): name is string => name !== undefined);
    if (given.length > 1) problems.push(`${given.join(', ')}: set one way to authenticate to NATS`);
    if (given.length > 0 && /\/\/[^/]*@/.test(env['NATS_URL'] ?? '')) {
      problems.push(
        `NATS_URL carries credentials and ${given.join(', ')} is set too: give them in one place`,
      );
    }
    let nkeySeed: string | undefined;
    if (seedFile !== undefined && existsSync(seedFile)) {
      nkeySeed = readSecretFile(seedFile);
      if (!/^SU[A-Z2-7]{50,}$/.test(nkeySeed)) {
        problems.push(`NATS_NKEY_SEED_FILE=${seedFile}: not an NKey user seed (it starts with SU)`);
      }
    }
    const credentials: NatsCredentials = {
      ...(user === undefined ? {} : { user, pass: pass ?? '' }),
      ...(token === undefined ? {} : { token }),
      ...(nkeySeed === undefined ? {} : { nkeySeed }),
      ...(credsFile === undefined ? {} : { credsFile }),
      ...(tls === undefined ? {} : { tls }),
    };
    return Object.keys(credentials).length === 0 ? {} : { natsCredentials: credentials };
  }
  return {};
}

function readSecretFile(path: string): string {
  return readFileSync(path, 'utf8').trim();
}

/**
 * What MULTIAGENTS_KMS_MODULE exports: the call that unwraps (decrypts) a data key with the key
 * encryption key the KMS holds, for example AWS KMS `Decrypt`, Google Cloud KMS `decrypt` or
 * Vault transit `decrypt`. Called once per key when a service opens its backend (a rejection is
 * retried with the broker's backoff); the unwrapped key must be 32 bytes (AES-256-GCM).
 *
 * @example
 * // kms.js, with @aws-sdk/client-kms installed next to it
 * const { KMSClient, DecryptCommand } = require('@aws-sdk/client-kms');
 * const kms = new KMSClient({});
 * exports.unwrapKey = async (wrapped) =>
 *   Buffer.from((await kms.send(new DecryptCommand({ CiphertextBlob: wrapped }))).Plaintext);
 */
export interface KmsModule {
  unwrapKey(wrapped: Buffer, keyId: string): Promise<Uint8Array>;
}

/** The payload key ring as the KMS wrapped it (see {@link ServiceConfig.wrappedPayloadKeys}). */
export interface WrappedPayloadKeys {
  /** The key that encrypts: the first listed. */
  readonly currentKeyId: string;
  /** Every key by id, wrapped. */
  readonly wrapped: ReadonlyMap<string, Buffer>;
  /** Absolute path of the module that unwraps them. */
  readonly kmsModule: string;
}

/**
 * Reads MULTIAGENTS_PAYLOAD_KEYS_WRAPPED (`keyId:base64` of wrapped keys, the first encrypts) and
 * MULTIAGENTS_KMS_MODULE (the module's path): both or neither, and never with
 * MULTIAGENTS_PAYLOAD_KEYS.
 */
export function parseWrappedPayloadKeys(
  env: Environment,
  problems: string[],
): WrappedPayloadKeys | undefined {
  const raw = env['MULTIAGENTS_PAYLOAD_KEYS_WRAPPED']?.trim() ?? '';
  const module = env['MULTIAGENTS_KMS_MODULE']?.trim() ?? '';
  if (raw === '' && module === '') return undefined;
  if (raw === '' || module === '') {
    problems.push('MULTIAGENTS_PAYLOAD_KEYS_WRAPPED and MULTIAGENTS_KMS_MODULE go together');
    return undefined;
  }
  if ((env['MULTIAGENTS_PAYLOAD_KEYS']?.trim() ?? '') !== '') {
    problems.push('MULTIAGENTS_PAYLOAD_KEYS and MULTIAGENTS_PAYLOAD_KEYS_WRAPPED: give the keys one way');
    return undefined;
  }
  const kmsModule = resolvePath(module);
  if (!existsSync(kmsModule)) problems.push(`MULTIAGENTS_KMS_MODULE=${module}: no such file`);
  try {
    const ring = parseKeyRing(raw, { name: 'MULTIAGENTS_PAYLOAD_KEYS_WRAPPED' });
    return { currentKeyId: ring.currentKeyId, wrapped: ring.keys, kmsModule };
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    problems.push(...err.problems);
    return undefined;
  }
}

/** HMAC keys shorter than this are refused (SHA-256's output size). */
export const MIN_BUS_KEY_BYTES = 32;

/**
 * Reads MULTIAGENTS_PAYLOAD_KEYS (`keyId:base64`, 32-byte AES-256-GCM keys, the first encrypts,
 * every one decrypts: payloads on the bus are encrypted) and MULTIAGENTS_BUS_SIGNING_KEY (one `keyId:base64` pair: the key this service signs with) and
 * MULTIAGENTS_BUS_VERIFICATION_KEYS (comma-separated pairs: every key whose signatures this service
 * accepts; default the signing key alone). Give worker-managers only the orchestrators' keys to
 * verify, so they execute only commands an orchestrator signed. Key values never appear in problems.
 */
export function parseBusSigning(env: Environment, problems: string[]): EnvelopeCodecOptions | undefined {
  const rawSigning = env['MULTIAGENTS_BUS_SIGNING_KEY']?.trim() ?? '';
  const rawVerification = env['MULTIAGENTS_BUS_VERIFICATION_KEYS']?.trim() ?? '';
  const ring = (value: string, name: string): KeyRing | undefined => {
    try {
      return parseKeyRing(value, { name, minKeyBytes: MIN_BUS_KEY_BYTES });
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      problems.push(...err.problems);
      return undefined;
    }
  };
  const signing = rawSigning === '' ? undefined : ring(rawSigning, 'MULTIAGENTS_BUS_SIGNING_KEY');
  if (signing !== undefined && signing.keys.size !== 1) {
    problems.push(
      'MULTIAGENTS_BUS_SIGNING_KEY: one keyId:base64key pair (list the keys to accept in MULTIAGENTS_BUS_VERIFICATION_KEYS)',
    );
  }
  const verification =
    rawVerification === '' ? undefined : ring(rawVerification, 'MULTIAGENTS_BUS_VERIFICATION_KEYS');
  const rawPayload = env['MULTIAGENTS_PAYLOAD_KEYS']?.trim() ?? '';
  let payloadKeys: KeyRing | undefined;
  if (rawPayload !== '') {
    try {
      payloadKeys = parseKeyRing(rawPayload, { name: 'MULTIAGENTS_PAYLOAD_KEYS', exactKeyBytes: 32 });
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      problems.push(...err.problems);
    }
  }
  if (signing === undefined && verification === undefined && payloadKeys === undefined) return undefined;
  return {
    ...(signing === undefined ? {} : { keys: signing }),
    ...(verification === undefined ? {} : { verificationKeys: verification.keys }),
    ...(payloadKeys === undefined ? {} : { payloadKeys }),
  };
}

/** Most replicas a JetStream stream can have. */
const MAX_NATS_REPLICAS = 5;
const BOOLEANS: Readonly<Record<string, boolean>> = {
  true: true,
  yes: true,
  '1': true,
  false: false,
  no: false,
  '0': false,
};

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
      problems.push(`${name}=${maskUrl(raw)}: "${maskUrl(part)}" is not a URL`);
      continue;
    }
    if (!protocols.includes(parsed.protocol)) {
      problems.push(`${name}=${maskUrl(raw)}: protocol must be one of ${protocols.join(' ')}`);
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
  const redisCluster =
    backend === Backend.Redis && redisUrl !== undefined ? clusterMode(env, redisUrl, problems) : false;
  let redisPartitions: number | undefined;
  const rawPartitions = env['MULTIAGENTS_REDIS_PARTITIONS'];
  if (rawPartitions !== undefined && rawPartitions !== '') {
    redisPartitions = Number(rawPartitions);
    if (!Number.isInteger(redisPartitions) || redisPartitions < 1 || redisPartitions > 1024) {
      problems.push(`MULTIAGENTS_REDIS_PARTITIONS=${rawPartitions}: must be an integer from 1 to 1024`);
    }
  }
  let natsReplicas: number | undefined;
  const rawReplicas = env['MULTIAGENTS_NATS_REPLICAS'];
  if (rawReplicas !== undefined && rawReplicas !== '') {
    natsReplicas = Number(rawReplicas);
    if (!Number.isInteger(natsReplicas) || natsReplicas < 1 || natsReplicas > MAX_NATS_REPLICAS) {
      problems.push(
        `MULTIAGENTS_NATS_REPLICAS=${rawReplicas}: must be an integer from 1 to ${MAX_NATS_REPLICAS} (JetStream keeps at most ${MAX_NATS_REPLICAS} replicas)`,
      );
    }
  }
  const prefix = env['MULTIAGENTS_PREFIX'] || 'multiagents';
  if (!PREFIX.test(prefix)) problems.push(`MULTIAGENTS_PREFIX=${prefix}: must match ${PREFIX.source}`);
  const grpcPort = port(env, 'GRPC_PORT', problems, defaults.grpcPort) as number;
  const httpPort = port(env, 'HTTP_PORT', problems);
  const logLevel = env['LOG_LEVEL'] || 'info';
  if (!LOG_LEVELS.includes(logLevel))
    problems.push(`LOG_LEVEL=${logLevel}: must be one of ${LOG_LEVELS.join(', ')}`);
  const busCodec = parseBusSigning(env, problems);
  const wrappedPayloadKeys = parseWrappedPayloadKeys(env, problems);
  const rawPlaintext = (env['MULTIAGENTS_PAYLOAD_ACCEPT_PLAINTEXT'] ?? '').trim().toLowerCase();
  const acceptPlaintextAtRest = rawPlaintext === '' ? undefined : BOOLEANS[rawPlaintext];
  if (rawPlaintext !== '' && acceptPlaintextAtRest === undefined)
    problems.push(`MULTIAGENTS_PAYLOAD_ACCEPT_PLAINTEXT=${rawPlaintext}: must be true or false`);
  const credentials = parseBrokerCredentials(env, backend, problems);
  if (problems.length > 0) throw new ValidationError('invalid configuration', problems);
  return {
    ...(busCodec === undefined ? {} : { busCodec }),
    ...(wrappedPayloadKeys === undefined ? {} : { wrappedPayloadKeys }),
    ...(acceptPlaintextAtRest === undefined ? {} : { acceptPlaintextAtRest }),
    ...credentials,
    backend,
    ...(redisUrl === undefined ? {} : { redisUrl }),
    ...(redisCluster ? { redisCluster } : {}),
    ...(natsUrl === undefined ? {} : { natsUrl }),
    ...(redisPartitions === undefined ? {} : { redisPartitions }),
    ...(natsReplicas === undefined || backend !== Backend.Nats ? {} : { natsReplicas }),
    prefix,
    grpcPort,
    ...(httpPort === undefined ? {} : { httpPort }),
    logLevel,
  };
}

/**
 * Redis Cluster or one server: MULTIAGENTS_REDIS_CLUSTER when set, else several seeds mean a
 * cluster. A cluster's seeds share their credentials and use database 0 (the only one a cluster has).
 */
function clusterMode(env: Environment, redisUrl: string, problems: string[]): boolean {
  const seeds = redisUrl
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const raw = (env['MULTIAGENTS_REDIS_CLUSTER'] ?? '').trim().toLowerCase();
  let cluster = seeds.length > 1;
  if (raw !== '') {
    const value = BOOLEANS[raw];
    if (value === undefined) {
      problems.push(`MULTIAGENTS_REDIS_CLUSTER=${raw}: must be true or false`);
    } else if (!value && seeds.length > 1) {
      problems.push(
        `REDIS_URL lists ${seeds.length} addresses but MULTIAGENTS_REDIS_CLUSTER=${raw}: one Redis server takes one address (several are the seed nodes of a Redis Cluster)`,
      );
      return false;
    } else {
      cluster = value;
    }
  }
  if (!cluster) return false;
  const credentials = new Set<string>();
  for (const seed of seeds) {
    let parsed: URL;
    try {
      parsed = new URL(seed);
    } catch {
      continue; // reported by url()
    }
    credentials.add(`${parsed.username}:${parsed.password}`);
    const db = parsed.pathname.replace(/^\//, '');
    if (db !== '' && db !== '0') {
      problems.push(`REDIS_URL=${maskUrl(redisUrl)}: a Redis Cluster has only database 0, not ${db}`);
    }
  }
  if (credentials.size > 1) {
    problems.push(
      `REDIS_URL=${maskUrl(redisUrl)}: the seed nodes carry different credentials: give the same user and password in each`,
    );
  }
  return true;
}

/** A comma-separated list variable, trimmed, empties dropped. */
export function listVariable(env: Environment, name: string): string[] {
  return (env[name] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
