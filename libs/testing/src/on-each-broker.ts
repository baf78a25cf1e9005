/// <reference types="jest" />
// Jest's globals are typed for this file only: it declares tests for the specs that call it.
import { startNatsServer, startRedisServer, type ServerProcess } from './server-process';

/** The brokers {@link itOnEachBroker} runs a scenario on. */
export type BrokerName = 'redis' | 'nats';

const START: Readonly<Record<BrokerName, () => Promise<ServerProcess>>> = {
  redis: () => startRedisServer(),
  nats: () => startNatsServer(),
};

/**
 * Declares one test per broker (`on Redis`, `on NATS`), each running `scenario` against a private
 * server started for it and stopped afterwards, whatever happened.
 *
 * @example
 * describe('signed bus messages', () => itOnEachBroker((broker, server) => scenario(broker, server), 90_000));
 */
export function itOnEachBroker(
  scenario: (broker: BrokerName, server: ServerProcess) => Promise<void>,
  timeoutMs: number,
): void {
  for (const [broker, title] of [
    ['redis', 'on Redis'],
    ['nats', 'on NATS'],
  ] as const) {
    it(
      title,
      async () => {
        const server = await START[broker]();
        try {
          await scenario(broker, server);
        } finally {
          await server.stop();
        }
      },
      timeoutMs,
    );
  }
}
