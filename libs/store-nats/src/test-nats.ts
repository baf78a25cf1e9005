import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type ServerProcess } from '@multiagents/testing';

let counter = 0;

/** A prefix no other test in this process uses. */
export function freshPrefix(label = 't'): string {
  counter += 1;
  return `${label}${process.pid}-${counter}-${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * One private nats-server (JetStream, own store dir) for a test file, plus an admin connection
 * that deletes a prefix's buckets after each test.
 */
export interface NatsTestServer {
  readonly server: ServerProcess;
  readonly url: string;
  /** Deletes every bucket (KV stream) named under `prefix`. */
  destroyPrefix(prefix: string): Promise<void>;
  /** A raw handle on a bucket, to look behind a store's back. */
  bucket(name: string): Promise<KV>;
  /** The keys of a bucket matching `filter`, sorted. */
  keys(name: string, filter?: string): Promise<string[]>;
  stop(): Promise<void>;
}

/** Starts the file's server; call from beforeAll and `stop()` from afterAll. */
export async function startNatsTestServer(): Promise<NatsTestServer> {
  const server = await startNatsServer();
  let admin: NatsConnection | undefined;
  const adminConnection = async (): Promise<NatsConnection> => {
    if (admin === undefined || admin.isClosed()) {
      admin = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    }
    return admin;
  };
  return {
    server,
    url: server.url,
    async destroyPrefix(prefix: string) {
      const jsm = await jetstreamManager(await adminConnection());
      const names: string[] = [];
      for await (const name of jsm.streams.names()) if (name.startsWith(`KV_${prefix}-`)) names.push(name);
      for (const name of names) await jsm.streams.delete(name);
    },
    async bucket(name: string) {
      return new Kvm(await adminConnection()).open(name);
    },
    async keys(name: string, filter = '>') {
      const jsm = await jetstreamManager(await adminConnection());
      const info = await jsm.streams.info(`KV_${name}`, { subjects_filter: `$KV.${name}.${filter}` });
      return Object.keys(info.state.subjects ?? {})
        .map((subject) => subject.slice(`$KV.${name}.`.length))
        .sort();
    },
    async stop() {
      await admin?.close().catch(() => undefined);
      await server.stop();
    },
  };
}
