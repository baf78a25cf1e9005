/** Structured fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/**
 * The logging port. pino implements it in @multiagents/telemetry; libraries never use `console`.
 * Fields first, message second, as pino does.
 */
export interface Logger {
  debug(fields: LogFields, message: string): void;
  info(fields: LogFields, message: string): void;
  warn(fields: LogFields, message: string): void;
  error(fields: LogFields, message: string): void;
  child(bindings: LogFields): Logger;
}

/** A logger that drops everything (the default when none is given). */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};
