import { MemoryEventBus } from '@multiagents/bus-memory';
import { NatsEventBus } from '@multiagents/bus-nats';
import { RedisEventBus } from '@multiagents/bus-redis';
import {
  silentLogger,
  systemClock,
  type Clock,
  type DefinitionStore,
  type EventBus,
  type Logger,
  type ServiceConfig,
  type StateStore,
  type TimerStore,
} from '@multiagents/core';
import { MemoryDefinitionStore, MemoryStateStore, MemoryTimerStore } from '@multiagents/store-memory';
import { NatsDefinitionStore, NatsStateStore, NatsTimerStore } from '@multiagents/store-nats';
import { RedisDefinitionStore, RedisStateStore, RedisTimerStore } from '@multiagents/store-redis';
import { connect } from '@nats-io/transport-node';

/** The adapters behind the core ports for one configured backend. */
export interface Backend {
  readonly bus: EventBus;
  readonly store: StateStore;
  readonly timers: TimerStore;
  readonly definitions: DefinitionStore;
  /** Closes every adapter (and the connection they share, if any). */
  close(): Promise<void>;
}

/** Options of {@link openBackend}. */
export interface OpenBackendOptions {
  readonly logger?: Logger;
  readonly clock?: Clock;
  /**
   * Run store maintenance in this process: with NATS, terminal runs older than
   * {@link TERMINAL_RUN_TTL_MS} are purged every {@link PURGE_INTERVAL_MS} (Redis expires them by
   * itself). Orchestrators turn it on; worker-managers need not.
   */
  readonly maintenance?: boolean;
}

/** How long terminal runs are kept on every backend: 7 days (Redis TTL, NATS purge). */
export const TERMINAL_RUN_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** How often an orchestrator purges expired terminal runs from NATS KV. */
export const PURGE_INTERVAL_MS = 60_000;

/**
 * Opens the backend a service's configuration names (SPEC §1): `memory` (one process), `redis`
 * (Streams + Lua CAS) or `nats` (JetStream + KV). The one place that knows every adapter, so apps
 * stay thin and adapters never know each other.
 */
export async function openBackend(
  config: Pick<ServiceConfig, 'backend' | 'redisUrl' | 'natsUrl' | 'prefix'>,
  options: OpenBackendOptions = {},
): Promise<Backend> {
  const logger = options.logger ?? silentLogger;
  const clock = options.clock ?? systemClock;
  const prefix = config.prefix;
  switch (config.backend) {
    case 'memory': {
      const parts = {
        bus: new MemoryEventBus(),
        store: new MemoryStateStore({ clock }),
        timers: new MemoryTimerStore(),
        definitions: new MemoryDefinitionStore(),
      };
      return { ...parts, close: () => closeAll(parts) };
    }
    case 'redis': {
      const url = required(config.redisUrl, 'REDIS_URL');
      const parts = {
        bus: new RedisEventBus({ url, prefix, logger: logger.child({ component: 'bus-redis' }), clock }),
        store: new RedisStateStore({
          url,
          prefix,
          logger: logger.child({ component: 'store-redis' }),
          clock,
        }),
        timers: new RedisTimerStore({ url, prefix, logger: logger.child({ component: 'store-redis' }) }),
        definitions: new RedisDefinitionStore({
          url,
          prefix,
          logger: logger.child({ component: 'store-redis' }),
        }),
      };
      return { ...parts, close: () => closeAll(parts) };
    }
    case 'nats': {
      const servers = required(config.natsUrl, 'NATS_URL')
        .split(',')
        .map((s) => s.trim());
      // One connection for all four adapters; it reconnects on its own.
      const connection = await connect({ servers, name: `multiagents-${prefix}`, maxReconnectAttempts: -1 });
      const parts = {
        bus: new NatsEventBus({ connection, prefix, logger: logger.child({ component: 'bus-nats' }) }),
        store: new NatsStateStore({ connection, prefix, clock, terminalRunTtlMs: TERMINAL_RUN_TTL_MS }),
        timers: new NatsTimerStore({ connection, prefix }),
        definitions: new NatsDefinitionStore({ connection, prefix }),
      };
      // NATS 2.9 KV has no per-key TTL: retention is a periodic purge (several orchestrators doing
      // it is harmless: each deletion is guarded by the revision it read).
      const purge = options.maintenance
        ? setInterval(() => {
            parts.store.purgeExpired(clock.now()).catch((err: unknown) => {
              logger.warn({ err: String(err) }, 'purging expired runs failed; will retry');
            });
          }, PURGE_INTERVAL_MS).unref()
        : undefined;
      return {
        ...parts,
        close: async () => {
          if (purge) clearInterval(purge);
          await closeAll(parts);
          await connection.drain().catch(() => connection.close());
        },
      };
    }
  }
}

function required(value: string | undefined, name: string): string {
  if (!value) throw new Error(`${name} is required for this backend`);
  return value;
}

async function closeAll(parts: Omit<Backend, 'close'>): Promise<void> {
  // The bus first: handlers in flight may still write state.
  await parts.bus.close();
  await Promise.allSettled([parts.store.close(), parts.timers.close(), parts.definitions.close()]);
}
