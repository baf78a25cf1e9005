export { systemClock } from './ports/clock';
export type { Clock } from './ports/clock';
export { uuidGenerator } from './ports/id-generator';
export type { IdGenerator } from './ports/id-generator';
export { silentLogger } from './ports/logger';
export type { Logger, LogFields } from './ports/logger';
export { DEFAULT_SUBSCRIBE_OPTIONS } from './ports/event-bus';
export type {
  EventBus,
  Delivery,
  DeliveryHandler,
  SubscribeOptions,
  Subscription,
  DeadLetter,
} from './ports/event-bus';
export type { Effect, Timer, TimerPayload } from './ports/effects';
export type {
  StateStore,
  TimerStore,
  DefinitionStore,
  DefinitionSummary,
  StoredRun,
  OutboxEntry,
  CreateRunResult,
  RunFilter,
  RunPage,
  PendingOutbox,
} from './ports/state-store';
