export { createPinoLogger, REDACTED_PATHS } from './pino-logger';
export type { PinoLoggerOptions } from './pino-logger';
export { HealthServer } from './health-server';
export type { StatsSource } from './health-server';
