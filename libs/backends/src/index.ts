/**
 * The one place that knows every backend: reads the shared service settings (SPEC §7) and opens
 * the configured backend behind the core ports.
 *
 * @example
 * // env: the environment the app's config module hands over
 * const config = parseServiceConfig(env, { grpcPort: 50051 });
 * const backend = await openBackend(config, { logger });
 */

/** Opens the configured backend; what it returns; retention. */
export { openBackend, openBackendWhenReachable, TERMINAL_RUN_TTL_MS } from './open-backend';
/** A backend's ports and its options. */
export type {
  Backend,
  BackendSettings,
  OpenBackendOptions,
  RecommendedOrchestratorOptions,
} from './open-backend';
/** The shared service settings, the backend names, and list variables. */
export {
  parseServiceConfig,
  parseBusSigning,
  parseBrokerCredentials,
  BROKER_CREDENTIAL_VARIABLES,
  listVariable,
  MIN_BUS_KEY_BYTES,
  Backend as BackendName,
} from './service-config';
/** The parsed shared settings and the environment shape apps pass. */
export type {
  ServiceConfig,
  Environment,
  RedisCredentials,
  KmsModule,
  WrappedPayloadKeys,
} from './service-config';
/** Payload keys wrapped by a KMS, unwrapped by the user's module as a backend opens. */
export { unwrapPayloadKeys } from './kms';
/** Start-up helpers every service uses: wait for the broker, explain failures, mask addresses. */
export {
  waitUntilReachable,
  startWhenBrokerAllows,
  isConfigurationError,
  describeStartupFailure,
  listenOrExplain,
  maskUrl,
  EXIT_CONFIG,
} from './startup';
/** Options of waitUntilReachable. */
export type { WaitUntilReachableOptions } from './startup';
/** The backend's memo for worker modules loaded before the backend opens (bound once it is). */
export { DeferredMemoStore } from './deferred-memo-store';
/** Encryption at rest over any RunStore (inputs, outputs, signals, errors), MemoStore and TimelineStore. */
export { SealingRunStore } from './sealing-run-store';
export { SealingMemoStore } from './sealing-memo-store';
export { SealingTimelineStore } from './sealing-timeline-store';
export type { SealingOptions } from './sealing-options';
