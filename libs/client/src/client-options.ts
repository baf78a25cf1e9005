import { credentials as grpcCredentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { MAX_TIMER_MS, ValidationError } from '@multiagents/contracts';

/** Retries of idempotent calls that failed with UNAVAILABLE (server down, restarting, draining). */
export interface RetryOptions {
  /** Attempts in all, the first one included; 1 disables retries. */
  readonly maxAttempts?: number;
  /** Delay before the first retry; each next one doubles, up to `maxBackoffMs` (with jitter). */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

/** TLS of the connection, as PEM contents (the caller reads the files). */
export interface ClientTlsOptions {
  /** CAs that sign the server's certificate; the system's roots when absent. */
  readonly ca?: Buffer | string;
  /** Client certificate and key, for mutual TLS. */
  readonly cert?: Buffer | string;
  readonly key?: Buffer | string;
  /** Name to check the server's certificate against, when it differs from the address's host. */
  readonly serverName?: string;
}

/** Options of {@link connect}. */
export interface ClientOptions {
  /**
   * Channel credentials; plaintext by default (the embedded mode, a local cluster). Prefer `tls`;
   * give at most one of the two.
   */
  readonly credentials?: ChannelCredentials;
  /** TLS (and mutual TLS with `cert` and `key`). */
  readonly tls?: ClientTlsOptions;
  /**
   * Bearer token (a JWT) sent as `authorization: Bearer …` on every call, or a function that
   * returns the current one (called before each call, so a token can be refreshed).
   */
  readonly token?: string | (() => string | Promise<string>);
  /**
   * Send the token without TLS to an address that is not this machine's (refused otherwise: the
   * token would cross the network in clear). For a proxy or service mesh on the way that adds TLS.
   */
  readonly allowTokenWithoutTls?: boolean;
  /** Default deadline of a unary call, retries included. */
  readonly timeoutMs?: number;
  readonly retry?: RetryOptions;
  /** Largest answer accepted (a page of runs with large contexts can be big). */
  readonly maxReceiveMessageBytes?: number;
  /** Extra grpc-js channel options. */
  readonly channelOptions?: ChannelOptions;
}

/** The resolved form of {@link ClientOptions}. */
export interface ResolvedClientOptions {
  readonly credentials: ChannelCredentials | undefined;
  readonly token: (() => string | Promise<string>) | undefined;
  readonly timeoutMs: number;
  readonly retry: Required<RetryOptions>;
  readonly maxReceiveMessageBytes: number;
  readonly channelOptions: ChannelOptions;
}

/** Defaults of {@link ClientOptions}. */
export const DEFAULT_CLIENT_OPTIONS = Object.freeze({
  timeoutMs: 10_000,
  retry: Object.freeze({ maxAttempts: 4, initialBackoffMs: 100, maxBackoffMs: 2_000 }),
  maxReceiveMessageBytes: 64 * 1024 * 1024,
});

/** This machine: a loopback host or a Unix socket, where nothing on the network sees a token. */
function isLocalAddress(address: string): boolean {
  if (address.startsWith('unix:')) return true;
  const target = address.replace(/^dns:(\/\/[^/]*\/)?/, '').replace(/^\/+/, '');
  const host = target.startsWith('[') ? target.slice(1, target.indexOf(']')) : target.split(':')[0];
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host ?? '');
}

function positiveInteger(value: unknown, name: string, problems: string[], max = MAX_TIMER_MS): void {
  if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) > 0)) {
    problems.push(`${name} must be a positive integer (got ${JSON.stringify(value) ?? typeof value})`);
  } else if (typeof value === 'number' && value > max) {
    problems.push(`${name} must be at most ${max} (got ${value})`);
  }
}

/** Applies the defaults and checks everything, listing every problem at once. */
export function resolveClientOptions(address: unknown, options: ClientOptions): ResolvedClientOptions {
  const problems: string[] = [];
  if (typeof address !== 'string' || address.trim().length === 0) {
    problems.push('address must be a non-empty string such as "127.0.0.1:50051"');
  }
  positiveInteger(options.timeoutMs, 'timeoutMs', problems);
  positiveInteger(options.retry?.maxAttempts, 'retry.maxAttempts', problems, 100);
  positiveInteger(options.retry?.initialBackoffMs, 'retry.initialBackoffMs', problems);
  positiveInteger(options.retry?.maxBackoffMs, 'retry.maxBackoffMs', problems);
  positiveInteger(options.maxReceiveMessageBytes, 'maxReceiveMessageBytes', problems, 1024 * 1024 * 1024);
  if (options.credentials !== undefined && options.tls !== undefined) {
    problems.push('give credentials or tls, not both');
  }
  const tls = options.tls;
  if (tls !== undefined && (tls.cert === undefined) !== (tls.key === undefined)) {
    problems.push('tls.cert and tls.key go together (mutual TLS needs both)');
  }
  const token = options.token;
  if (typeof token === 'string' && !/^[\x21-\x7e]+$/.test(token)) {
    problems.push('token must be non-empty printable ASCII without spaces');
  }
  if (
    token !== undefined &&
    tls === undefined &&
    options.credentials === undefined &&
    options.allowTokenWithoutTls !== true &&
    typeof address === 'string' &&
    !isLocalAddress(address)
  ) {
    problems.push(
      `a bearer token would go to ${address} unencrypted: use tls (the CLI's --tls), or allowTokenWithoutTls when TLS is added on the way`,
    );
  }
  if (problems.length > 0) throw new ValidationError('invalid client options', problems);
  const pem = (value: Buffer | string | undefined): Buffer | null =>
    value === undefined ? null : Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8');
  return {
    credentials:
      tls === undefined
        ? options.credentials
        : grpcCredentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert)),
    token: token === undefined ? undefined : typeof token === 'string' ? () => token : token,
    timeoutMs: options.timeoutMs ?? DEFAULT_CLIENT_OPTIONS.timeoutMs,
    retry: {
      maxAttempts: options.retry?.maxAttempts ?? DEFAULT_CLIENT_OPTIONS.retry.maxAttempts,
      initialBackoffMs: options.retry?.initialBackoffMs ?? DEFAULT_CLIENT_OPTIONS.retry.initialBackoffMs,
      maxBackoffMs: options.retry?.maxBackoffMs ?? DEFAULT_CLIENT_OPTIONS.retry.maxBackoffMs,
    },
    maxReceiveMessageBytes: options.maxReceiveMessageBytes ?? DEFAULT_CLIENT_OPTIONS.maxReceiveMessageBytes,
    channelOptions: {
      ...(tls?.serverName === undefined ? {} : { 'grpc.ssl_target_name_override': tls.serverName }),
      ...options.channelOptions,
    },
  };
}
