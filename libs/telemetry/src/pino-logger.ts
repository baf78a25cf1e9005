import type { LogFields, Logger } from '@multiagents/core';
import pino, { type DestinationStream, type Logger as Pino } from 'pino';
import pretty from 'pino-pretty';

/** How log lines look: one JSON object per line, or pino-pretty's coloured lines for people. */
export const LogFormat = { Json: 'json', Pretty: 'pretty' } as const;
/** One of {@link LogFormat}'s values. */
export type LogFormat = (typeof LogFormat)[keyof typeof LogFormat];

/** Options of {@link createPinoLogger}. */
export interface PinoLoggerOptions {
  /** Minimum level: trace, debug, info, warn, error, fatal or silent. */
  readonly level?: string;
  /** Fields on every line (service name, instance id…). */
  readonly base?: LogFields;
  /** Where lines go; standard output by default. */
  readonly destination?: DestinationStream;
  /**
   * `pretty` for a person at a terminal, `json` for log collectors. Default: `pretty` when lines
   * go to standard output and it is a terminal, else `json`.
   */
  readonly format?: LogFormat;
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

/**
 * Keys pino writes itself on every line. A field or binding of the same name is written with a
 * trailing underscore (`msg_`), never as a second `msg`.
 */
const PINO_KEYS: ReadonlySet<string> = new Set(['level', 'time', 'msg']);

type Level = 'debug' | 'info' | 'warn' | 'error';

function hasOwn(fields: LogFields, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(fields, key);
}

/** `fields` with pino's own keys renamed out of the way. */
function withoutPinoKeys(fields: LogFields): LogFields {
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(fields)) {
    if (!PINO_KEYS.has(key)) continue;
    copy ??= { ...fields };
    copy[`${key}_`] = copy[key];
    delete copy[key];
  }
  return copy ?? fields;
}

/**
 * pino writes a child's bindings after its parent's and a call's fields after both, without
 * looking for the same key: `child({ component: 'a' }).child({ component: 'b' })` would print
 * `"component"` twice, as would a call's field named like a binding. This logger keeps every
 * binding it was made with, so that each key appears once per line, the most specific value
 * winning (a call's field over a child's binding over its parent's).
 */
class PinoLogger implements Logger {
  constructor(
    /** The root, without bindings: lines whose keys overlap are written through it, merged. */
    private readonly root: Pino,
    /** The root's child with {@link bindings}: the fast path when nothing overlaps. */
    private readonly pino: Pino,
    private readonly bindings: LogFields,
  ) {}

  debug(fields: LogFields, message: string): void {
    this.write('debug', fields, message);
  }
  info(fields: LogFields, message: string): void {
    this.write('info', fields, message);
  }
  warn(fields: LogFields, message: string): void {
    this.write('warn', fields, message);
  }
  error(fields: LogFields, message: string): void {
    this.write('error', fields, message);
  }

  child(bindings: LogFields): Logger {
    const own = withoutPinoKeys(bindings);
    const merged = { ...this.bindings, ...own };
    const overlaps = Object.keys(own).some((key) => hasOwn(this.bindings, key));
    return new PinoLogger(this.root, overlaps ? this.root.child(merged) : this.pino.child(own), merged);
  }

  private write(level: Level, fields: LogFields, message: string): void {
    const own = withoutPinoKeys(fields);
    const overlaps = Object.keys(own).some((key) => hasOwn(this.bindings, key));
    if (overlaps) this.root[level]({ ...this.bindings, ...own }, message);
    else this.pino[level](own, message);
  }
}

/** pino-pretty for a terminal: one line per entry, `service/component` before the message. */
function prettyStream(destination: DestinationStream | undefined): DestinationStream {
  return pretty({
    colorize: destination === undefined ? pretty.isColorSupported : false,
    translateTime: 'SYS:HH:MM:ss.l',
    singleLine: true,
    ignore: 'pid,hostname,service,component',
    messageFormat: '{if service}{service}{end}{if component}/{component}{end}: {msg}',
    // Lines leave in order, and none is lost when the process exits right after logging.
    sync: true,
    ...(destination === undefined ? {} : { destination }),
  });
}

/**
 * The core Logger port on pino: structured fields, each key once per line, secrets redacted;
 * JSON lines, or pino-pretty's readable lines on a terminal.
 *
 * @example
 * const logger = createPinoLogger({ level: 'info', base: { service: 'orchestrator' } });
 * logger.child({ txId }).info({ step: 'charge_payment' }, 'step started');
 */
export function createPinoLogger(options: PinoLoggerOptions = {}): Logger {
  const format =
    options.format ??
    (options.destination === undefined && process.stdout.isTTY === true ? LogFormat.Pretty : LogFormat.Json);
  const destination = format === LogFormat.Pretty ? prettyStream(options.destination) : options.destination;
  const root = pino(
    {
      level: options.level ?? 'info',
      base: {},
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
  const base = withoutPinoKeys(options.base ?? {});
  return new PinoLogger(root, root.child(base), base);
}
