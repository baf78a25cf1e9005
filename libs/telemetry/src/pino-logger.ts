import type { LogFields, Logger } from '@multiagents/core';
import pino, { type DestinationStream, type Logger as Pino } from 'pino';

/** Options of {@link createPinoLogger}. */
export interface PinoLoggerOptions {
  /** Minimum level: trace, debug, info, warn, error, fatal or silent. */
  readonly level?: string;
  /** Fields on every line (service name, instance id…). */
  readonly base?: LogFields;
  /** Where lines go; standard output by default. */
  readonly destination?: DestinationStream;
}

/** Field paths never written in clear. */
export const REDACTED_PATHS = [
  'password',
  'apiKey',
  'token',
  'secret',
  '*.password',
  '*.apiKey',
  '*.token',
  '*.secret',
  'headers.authorization',
];

class PinoLogger implements Logger {
  constructor(private readonly pino: Pino) {}

  debug(fields: LogFields, message: string): void {
    this.pino.debug(fields, message);
  }
  info(fields: LogFields, message: string): void {
    this.pino.info(fields, message);
  }
  warn(fields: LogFields, message: string): void {
    this.pino.warn(fields, message);
  }
  error(fields: LogFields, message: string): void {
    this.pino.error(fields, message);
  }
  child(bindings: LogFields): Logger {
    return new PinoLogger(this.pino.child(bindings));
  }
}

/**
 * The core Logger port on pino: JSON lines, structured fields, secrets redacted.
 *
 * @example
 * const logger = createPinoLogger({ level: 'info', base: { service: 'orchestrator' } });
 * logger.child({ txId }).info({ step: 'charge_payment' }, 'step started');
 */
export function createPinoLogger(options: PinoLoggerOptions = {}): Logger {
  const instance = pino(
    {
      level: options.level ?? 'info',
      base: options.base ?? {},
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
  return new PinoLogger(instance);
}
