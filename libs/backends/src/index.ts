export { openBackend, TERMINAL_RUN_TTL_MS, PURGE_INTERVAL_MS } from './open-backend';
export type { Backend, OpenBackendOptions } from './open-backend';
