import { Kvm } from '@nats-io/kv';
import { resolveNatsBackendOptions, type NatsBackendOptions } from './nats-backend-options';
import { NatsContext, type NatsCounters } from './nats-context';
import { NatsDefinitionStore } from './nats-definition-store';
import { NatsEventBus } from './nats-event-bus';
import { NatsMemoStore } from './nats-memo-store';
import type { NatsNames } from './nats-names';
import { NatsRunStore } from './nats-run-store';
import { NatsTimerQueue } from './nats-timer-queue';
import { NatsTimelineStore } from './nats-timeline-store';
import { NatsWorkerRegistry } from './nats-worker-registry';

/** The NATS backend: one connection, its bus and its stores. */
export interface NatsBackend {
  readonly bus: NatsEventBus;
  readonly runs: NatsRunStore;
  readonly definitions: NatsDefinitionStore;
  /** The live worker-manager replicas (keys in the definitions bucket). */
  readonly registry: NatsWorkerRegistry;
  /** Run timelines and the event-monitor's once-only marks (their bucket is made on first use). */
  readonly timelines: NatsTimelineStore;
  /** Records written once per key (agent answers; their bucket is made on first use). */
  readonly memo: NatsMemoStore;
  /** Every stream, subject, consumer, bucket and key name in use. */
  readonly names: NatsNames;
  /** What the backend counted (the bus's `counters()` returns the same). */
  readonly counters: Readonly<NatsCounters>;
  /** Whether the NATS server can be reached now (connected, not between a disconnect and a reconnect). */
  connected(): boolean;
  /** Closes the bus (waiting for handlers in flight), then the stores, then the connection if it owns it. */
  close(): Promise<void>;
}

/**
 * Connects to NATS (or borrows `options.connection`), checks that JetStream is enabled, creates
 * or checks every stream, bucket and the timer consumer, and returns the bus and stores sharing
 * that connection. All JetStream API (admin) calls happen here, at subscribe time, in listings
 * and in maintenance; the per-step path makes none. Rejects with INVALID_ARGUMENT (every problem
 * listed) for bad options and FAILED_PRECONDITION when the server is unreachable or has no
 * JetStream.
 *
 * @example
 * const backend = await createNatsBackend({ servers: 'nats://127.0.0.1:4222', prefix: 'prod' });
 * const orchestrator = new Orchestrator({ ...backend, redispatchAfterMs: 30_000 });
 * await orchestrator.start();
 * // …
 * await orchestrator.close();
 * await backend.close();
 */
export async function createNatsBackend(options: NatsBackendOptions): Promise<NatsBackend> {
  const resolved = resolveNatsBackendOptions(options);
  const ctx = await NatsContext.open(resolved);
  try {
    const kvm = new Kvm(ctx.js);
    const [runsKv, definitionsKv] = await Promise.all([
      kvm.open(ctx.names.runsBucket),
      kvm.open(ctx.names.definitionsBucket),
    ]);
    const bus = new NatsEventBus(ctx);
    const runs = new NatsRunStore(ctx, runsKv, new NatsTimerQueue(ctx));
    const definitions = new NatsDefinitionStore(ctx, definitionsKv);
    const registry = new NatsWorkerRegistry(ctx, definitionsKv);
    ctx.onClose(() => definitions.close());
    ctx.onClose(() => runs.close());
    ctx.onClose(() => bus.close());
    if (resolved.maintenance !== undefined) runs.startMaintenance(resolved.maintenance.intervalMs);
    return {
      bus,
      runs,
      definitions,
      registry,
      timelines: new NatsTimelineStore(ctx),
      memo: new NatsMemoStore(ctx),
      names: ctx.names,
      counters: ctx.counters,
      connected: () => !ctx.isClosed && ctx.state.isConnected,
      close: () => ctx.close(),
    };
  } catch (err) {
    await ctx.close();
    throw err;
  }
}
