import type { EventType } from './event-types';

/**
 * The one message shape on the bus (SPEC §5). `payload` is JSON data; its shape depends on `type`
 * (see `payloads.ts`). `time` is milliseconds since the epoch.
 */
export interface Envelope<P = unknown> {
  readonly id: string;
  readonly type: EventType;
  readonly txId: string;
  readonly workflowId: string;
  readonly step?: string;
  readonly attempt?: number;
  readonly time: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly payload: P;
}

/** Topic names. Every backend maps them to its own streams or subjects under the configured prefix. */
export const Topics = {
  /** Commands for one worker name: worker-manager replicas compete for them in one group. */
  command: (worker: string): string => `commands.${worker}`,
  /** Results and heartbeats of steps, consumed by the orchestrators. */
  results: 'results',
  /** Lifecycle events, consumed by observers. */
  events: 'events',
  /** A broadcast channel (`EventBus.broadcast`, nothing kept): `step.cancel`, heard by every worker-manager. */
  control: 'control',
} as const;

/** Consumer group names used by the services. */
export const Groups = {
  workers: 'workers',
  orchestrators: 'orchestrators',
} as const;
