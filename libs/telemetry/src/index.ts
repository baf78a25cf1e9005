export { createPinoLogger, REDACTED_PATHS } from './pino-logger';
export type { PinoLoggerOptions } from './pino-logger';
