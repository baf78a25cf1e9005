import { ErrorCode, MultiAgentsError, ValidationError } from '@multiagents/contracts';
import type { Logger } from '@multiagents/core';

/** The exit code of a configuration error (sysexits' EX_CONFIG). */
export const EXIT_CONFIG = 78;

/**
 * The address with its password (and a lone token in the user part) hidden, for logs and errors:
 * `redis://app:s3cret@host:6379` → `redis://app:***@host:6379`. In a NATS address a user part
 * without a password is a token (`nats://s3cr3t@host`), whatever its length: hidden too. Several
 * comma-separated addresses (a NATS cluster) are masked one by one.
 */
export function maskUrl(address: string): string {
  return address
    .split(',')
    .map((part) => {
      const trimmed = part.trim();
      try {
        const url = new URL(trimmed);
        if (url.password) url.password = '***';
        else if (
          url.username &&
          (NATS_SCHEMES.has(url.protocol) || /^[A-Za-z0-9_-]{20,}$/.test(url.username))
        )
          url.username = '***';
        return url.toString().replace(/\/$/, '');
      } catch {
        // Everything up to the last @: a password may hold '/', '#' or '@' that broke the URL.
        return trimmed.replace(/\/\/.*@/, '//***@');
      }
    })
    .join(',');
}

/** Schemes of NATS addresses, where a user part alone is a token. */
const NATS_SCHEMES: ReadonlySet<string> = new Set(['nats:', 'tls:', 'ws:', 'wss:']);

/** Options of {@link waitUntilReachable}. */
export interface WaitUntilReachableOptions {
  readonly logger: Logger;
  /** The broker's address as configured (masked before it is logged). */
  readonly address?: string;
  /** First delay between two tries; it doubles up to `maxDelayMs`. */
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Stops waiting (a SIGTERM during start-up). */
  readonly signal?: AbortSignal;
  /** Errors not worth another try (a bad setting): thrown at once. Default: none. */
  readonly fatal?: (err: unknown) => boolean;
  /** What is being tried, for the log lines (default: reaching the broker). */
  readonly doing?: string;
}

/**
 * Calls `probe` until it succeeds, with growing delays, logging one line per failed try with the
 * broker's address (credentials masked) and the next delay. A broker that is down at start is not
 * a configuration error: the service waits for it, not ready meanwhile, instead of crash-looping.
 * Resolves false when `signal` aborted the wait.
 */
export async function waitUntilReachable(
  probe: () => Promise<unknown>,
  options: WaitUntilReachableOptions,
): Promise<boolean> {
  const maxDelayMs = options.maxDelayMs ?? 10_000;
  let delayMs = options.initialDelayMs ?? 250;
  const broker = options.address === undefined ? {} : { broker: maskUrl(options.address) };
  for (let attempt = 1; ; attempt++) {
    if (options.signal?.aborted) return false;
    try {
      await probe();
      if (attempt > 1)
        options.logger.info(
          { ...broker, attempts: attempt },
          options.doing === undefined ? 'broker reachable' : `${options.doing}: done`,
        );
      return true;
    } catch (err) {
      if (options.fatal?.(err)) throw err;
      options.logger.warn(
        { ...broker, attempt, nextDelayMs: delayMs, reason: firstLine(err) },
        options.doing === undefined
          ? 'broker not reachable yet; retrying'
          : `${options.doing}: the broker refused or timed out; retrying`,
      );
    }
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        options.signal?.removeEventListener('abort', stop);
        resolve();
      }, delayMs);
      options.signal?.addEventListener('abort', stop, { once: true });
    });
    delayMs = Math.min(maxDelayMs, delayMs * 2);
  }
}

const CONFIGURATION_CODES: ReadonlySet<string> = new Set([
  ErrorCode.InvalidArgument,
  ErrorCode.AlreadyExists,
  ErrorCode.Unauthenticated,
  ErrorCode.PermissionDenied,
]);

/**
 * A setting to fix, not a broker to wait for: an invalid setting or definition, a definition that
 * conflicts with the stored version, credentials the broker refuses.
 */
export function isConfigurationError(err: unknown): boolean {
  return err instanceof MultiAgentsError && CONFIGURATION_CODES.has(err.code);
}

/**
 * Runs `start` (what subscribes once the backend is open: the engine, the collector, the monitor)
 * until it succeeds, with growing delays: a reachable broker can still refuse or time out a
 * subscription for a while (a JetStream cluster electing the leader of a new consumer under load,
 * a Redis Cluster failing over). A configuration error is thrown at once. `start` undoes its own
 * part when it fails (each try starts from nothing). Resolves false when `signal` aborted the wait.
 */
export async function startWhenBrokerAllows(
  what: string,
  start: () => Promise<void>,
  options: Omit<WaitUntilReachableOptions, 'fatal' | 'doing'>,
): Promise<boolean> {
  return waitUntilReachable(start, { ...options, fatal: isConfigurationError, doing: what });
}

/**
 * What a service prints when it cannot start: every problem on its own line, no stack trace, and
 * the exit code to use (78 for configuration problems, 1 otherwise).
 */
export function describeStartupFailure(service: string, err: unknown): { text: string; exitCode: number } {
  if (err instanceof ValidationError) {
    // The message ends with the problems joined; the header is what comes before them.
    const joined = `: ${err.problems.join('; ')}`;
    const what = err.message.endsWith(joined) ? err.message.slice(0, -joined.length) : 'cannot start';
    return {
      text: `${service}: ${what}:\n${err.problems.map((p) => `  - ${p}`).join('\n')}\n`,
      exitCode: EXIT_CONFIG,
    };
  }
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code === 'EADDRINUSE' || /EADDRINUSE|No address added out of total/.test(firstLine(err))) {
    return { text: `${service}: ${firstLine(err)}\n`, exitCode: EXIT_CONFIG };
  }
  if (err instanceof MultiAgentsError) return { text: `${service}: ${err.message}\n`, exitCode: 1 };
  return {
    text: `${service} failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    exitCode: 1,
  };
}

/**
 * Runs `listen` and turns "address in use" into a configuration error that names the port and
 * the variable that sets it.
 */
export async function listenOrExplain<T>(
  listen: () => Promise<T>,
  port: number,
  variable: string,
): Promise<T> {
  try {
    return await listen();
  } catch (err) {
    const text = firstLine(err);
    if ((err as { code?: unknown }).code === 'EADDRINUSE' || /EADDRINUSE|No address added/.test(text)) {
      throw new ValidationError('cannot listen', [
        `${variable}=${port}: the port is in use by another process; free it or set ${variable} to another port (0 picks a free one)`,
      ]);
    }
    throw err;
  }
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0] ?? message;
}
