import { Metadata } from '@grpc/grpc-js';
import { connect, type ClientTlsOptions, type MultiAgentsClient } from '@multiagents/client';
import { Authorizer, type AuthOptions } from '@multiagents/grpc-server';
import type { DashboardAuth } from './dashboard';

/** Orchestrator clients kept open, one per logged-in token; the oldest is closed beyond this. */
const MAX_CLIENTS = 32;

/** The dashboard's authentication and the resources it holds. */
export interface DashboardAuthHandle {
  readonly auth: DashboardAuth;
  close(): void;
}

/**
 * Checks browsers' tokens exactly as the gRPC API checks callers' (the same JWT settings), and
 * acts on the orchestrator at `orchestratorAddress` with each user's own token (over `tls` when
 * given).
 */
export async function createDashboardAuth(
  options: AuthOptions,
  orchestratorAddress: string | undefined,
  tls?: ClientTlsOptions,
): Promise<DashboardAuthHandle> {
  const authorizer = new Authorizer(options);
  await authorizer.start();
  const clients = new Map<string, MultiAgentsClient>();
  const clientFor = (address: string, token: string): MultiAgentsClient => {
    let client = clients.get(token);
    if (client === undefined) {
      client = connect(address, { token, ...(tls === undefined ? {} : { tls }) });
      clients.set(token, client);
      if (clients.size > MAX_CLIENTS) {
        const [oldest, stale] = clients.entries().next().value as [string, MultiAgentsClient];
        clients.delete(oldest);
        stale.close();
      }
    }
    return client;
  };
  return {
    auth: {
      authenticate: (token) => {
        const metadata = new Metadata();
        metadata.set('authorization', `Bearer ${token}`);
        return authorizer.authenticate({ metadata });
      },
      ...(orchestratorAddress === undefined
        ? {}
        : { actionsFor: (token: string) => clientFor(orchestratorAddress, token) }),
    },
    close() {
      authorizer.close();
      for (const client of clients.values()) client.close();
      clients.clear();
    },
  };
}
