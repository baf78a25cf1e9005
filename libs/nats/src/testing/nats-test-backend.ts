import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startNatsServer, type NatsServerOptions, type NatsServerProcess } from '@multiagents/testing';
import { JetStreamApiError, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createNatsBackend, type NatsBackend } from '../nats-backend';
import type { NatsBackendOptions } from '../nats-backend-options';
import { NatsNames } from '../nats-names';

/** Requests of a test backend (see {@link NatsTestServer.backend}); each test gets 6× that. */
export const TEST_REQUEST_TIMEOUT_MS = 10_000;

let counter = 0;

/** A prefix no other test in this process uses. */
export function freshPrefix(label = 't'): string {
  counter += 1;
  return `${label}${process.pid}-${counter}`;
}

/** The server's cumulative counters and its message size limit, from `/varz`. */
export interface Varz {
  readonly in_msgs: number;
  readonly in_bytes: number;
  readonly out_msgs: number;
  readonly out_bytes: number;
  /** The largest message the server takes from a client (headers included). */
  readonly max_payload: number;
}

/**
 * One private {@link NatsTestServer} for the calling test file: started before its first test,
 * stopped after its last. Call the returned function inside a test or hook to get it.
 */
export function useNatsTestServer(): () => NatsTestServer {
  let server: NatsTestServer | undefined;
  beforeAll(async () => {
    server = await NatsTestServer.start();
  }, 20_000);
  afterAll(async () => {
    await server?.stop();
  });
  return () => {
    if (server === undefined)
      throw new Error('the nats-server is not started (use it inside a test or hook)');
    return server;
  };
}

/**
 * One private nats-server (JetStream, own store dir, monitoring port) for a test file, an admin
 * connection, and backends on fresh prefixes whose streams and buckets are deleted afterwards.
 */
export class NatsTestServer {
  private admin: NatsConnection | undefined;
  private readonly prefixes = new Set<string>();

  private constructor(readonly server: NatsServerProcess) {}

  /** Starts one; `options` change the server (a configuration file's text: `max_payload: 8192`). */
  static async start(options: Omit<NatsServerOptions, 'monitor'> = {}): Promise<NatsTestServer> {
    return new NatsTestServer(await startNatsServer({ ...options, monitor: true }));
  }

  /**
   * Runs `body` with a backend on a server of its own, started with `options` (a small
   * `max_payload`, say), then closes the backend and stops the server whatever happened.
   */
  static async withBackend(
    options: Omit<NatsServerOptions, 'monitor'>,
    body: (backend: NatsBackend, server: NatsTestServer) => Promise<void>,
  ): Promise<void> {
    const server = await NatsTestServer.start(options);
    let backend: NatsBackend | undefined;
    try {
      backend = await server.backend();
      await body(backend, server);
    } finally {
      await backend?.close();
      await server.stop();
    }
  }

  get url(): string {
    return this.server.url;
  }

  /**
   * A backend on a fresh prefix (or the given one: a second process on the same data). Its
   * requests may take up to 10 s: on a loaded machine a JetStream stream or bucket made on file
   * storage can take seconds, which is slowness, not the failure a test looks for.
   */
  async backend(options: Partial<NatsBackendOptions> = {}): Promise<NatsBackend> {
    const prefix = options.prefix ?? freshPrefix();
    this.prefixes.add(prefix);
    return createNatsBackend({
      servers: this.url,
      requestTimeoutMs: TEST_REQUEST_TIMEOUT_MS,
      ...options,
      prefix,
    });
  }

  async jsm(): Promise<JetStreamManager> {
    if (this.admin === undefined || this.admin.isClosed()) {
      this.admin = await connect({ servers: this.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    }
    return jetstreamManager(this.admin);
  }

  /** Deletes every stream and bucket of a prefix. */
  async destroy(prefix: string): Promise<void> {
    const names = new NatsNames(prefix);
    const jsm = await this.jsm();
    for (const stream of [
      names.stream,
      names.deadLetterStream,
      names.timerStream,
      names.runsStream,
      names.definitionsStream,
      names.timelinesStream,
      names.memoStream,
    ]) {
      try {
        await jsm.streams.delete(stream);
      } catch (err) {
        if (!(err instanceof JetStreamApiError)) throw err;
      }
    }
    this.prefixes.delete(prefix);
  }

  /** A raw handle on a bucket, to look behind (or write behind) the store's back. */
  async kv(bucket: string): Promise<KV> {
    await this.jsm();
    return new Kvm(this.admin as NatsConnection).open(bucket);
  }

  async varz(): Promise<Varz> {
    const response = await fetch(`${this.server.monitorUrl ?? ''}/varz`);
    return (await response.json()) as Varz;
  }

  /** JetStream API requests served so far (`/jsz` → api.total): admin calls, message gets, purges. */
  async apiCalls(): Promise<number> {
    const response = await fetch(`${this.server.monitorUrl ?? ''}/jsz`);
    const body = (await response.json()) as { api?: { total?: number } };
    return body.api?.total ?? 0;
  }

  async stop(): Promise<void> {
    await this.admin?.close().catch(() => undefined);
    await this.server.stop();
  }
}

/**
 * True once nats-server has written `needle` to a file under its store directory: JetStream's
 * file store acknowledges a publish before it writes it to the OS (asynchronously, within
 * milliseconds on 2.9), and only what reached the OS survives a kill -9. Crash tests wait for this
 * before killing the server, so they test the backend, not the broker's flush window.
 */
export function isOnDisk(storeDir: string, needle: string): boolean {
  const wanted = Buffer.from(needle);
  const visit = (dir: string): boolean => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory() ? visit(path) : entry.isFile() && readFileSync(path).includes(wanted))
        return true;
    }
    return false;
  };
  return visit(storeDir);
}
