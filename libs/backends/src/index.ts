export { openBackend } from './open-backend';
export type { Backend, OpenBackendOptions } from './open-backend';
