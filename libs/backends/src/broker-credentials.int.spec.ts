/**
 * Issue 12 item 6: broker credentials from the environment, and least privilege. A redis-server
 * whose only user is an ACL user limited to the prefix's keys, and a nats-server whose
 * worker-manager user may use only its workers' command consumers and the results and events
 * subjects, both run the order saga; reaching outside those grants is refused by the broker.
 */
import { ErrorCode, RunState, Topics, type WorkflowDefinition } from '@multiagents/contracts';
import { Orchestrator, WorkflowBuilder } from '@multiagents/core';
import {
  createTestCa,
  freePort,
  startNatsServer,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { connect } from '@nats-io/transport-node';
import { WorkerManager, defineWorker } from '@multiagents/worker-sdk';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBackend, type Backend } from './open-backend';
import { parseServiceConfig, type ServiceConfig } from './service-config';
import { isConfigurationError } from './startup';

const WORKERS = [
  'inventory.reserve',
  'inventory.release',
  'payment.charge',
  'payment.refund',
  'shipping.ship',
];

const orderSaga: WorkflowDefinition = new WorkflowBuilder('order_processing')
  .step('reserve_inventory', 'inventory.reserve', { compensation: 'inventory.release' })
  .step('charge_payment', 'payment.charge', { compensation: 'payment.refund' })
  .step('ship_order', 'shipping.ship')
  .build();

const workers = (): ReturnType<typeof defineWorker>[] =>
  [
    defineWorker<{ n: number }, unknown>('inventory.reserve', (input) => ({ reservationId: `r-${input.n}` })),
    defineWorker('inventory.release', () => ({ released: true })),
    defineWorker<{ n: number }, unknown>('payment.charge', (input) => ({ paymentId: `p-${input.n}` })),
    defineWorker('payment.refund', () => ({ refunded: true })),
    defineWorker<{ n: number }, unknown>('shipping.ship', (input) => {
      if (input.n % 4 === 3) throw Object.assign(new Error('no carrier'), { nonRetryable: true });
      return { trackingId: `t-${input.n}` };
    }),
  ] as ReturnType<typeof defineWorker>[];

/** Runs `runs` order sagas with an orchestrator and a worker-manager on their own credentials. */
async function runOrderSaga(orchestratorConfig: ServiceConfig, workerConfig: ServiceConfig, runs: number) {
  const opened: Backend[] = [];
  const main = await openBackend(orchestratorConfig);
  opened.push(main);
  const side = await openBackend(workerConfig);
  opened.push(side);
  const orchestrator = new Orchestrator({
    bus: main.bus,
    runs: main.runs,
    definitions: main.definitions,
    registry: main.registry,
    ...main.orchestrator,
  });
  const manager = new WorkerManager({
    bus: side.bus,
    registry: side.registry,
    workers: workers(),
    heartbeatIntervalMs: 60_000,
  });
  try {
    await orchestrator.start();
    await manager.start();
    await orchestrator.registerWorkflow(orderSaga);
    const txIds: string[] = [];
    for (let n = 0; n < runs; n += 1) {
      txIds.push((await orchestrator.startWorkflow('order_processing', { n })).txId);
    }
    const finals = await Promise.all(
      txIds.map((txId) => orchestrator.waitForTerminal(txId, { timeoutMs: 30_000 })),
    );
    return finals.map((run) => run.state);
  } finally {
    await manager.close({ drainTimeoutMs: 0 });
    await orchestrator.close();
    for (const backend of opened.reverse()) await backend.close();
  }
}

const expectedStates = (runs: number): string[] =>
  Array.from({ length: runs }, (_, n) => (n % 4 === 3 ? RunState.Compensated : RunState.Completed));

describe('Redis: an ACL user limited to the prefix', () => {
  let redis: ServerProcess;
  const prefix = 'tenant-a';
  beforeAll(async () => {
    // An ACL file: the default user is off, the service's user sees only its prefix.
    const acl = join(mkdtempSync(join(tmpdir(), 'redis-acl-')), 'users.acl');
    writeFileSync(
      acl,
      'user default off\n' +
        `user saga on >s3cret/with#odd@chars ~${prefix}:* &${prefix}:* +@all -@admin -@dangerous +info +client|unblock\n`,
    );
    redis = await startRedisServer({ args: ['--aclfile', acl] });
  }, 20_000);
  afterAll(() => redis?.stop());

  /** redis-cli as the deployment's user: its answer as text. */
  const sagaCli = (...args: string[]): string =>
    execFileSync(
      'redis-cli',
      [
        '-p',
        String(redis.port),
        '--user',
        'saga',
        '--pass',
        's3cret/with#odd@chars',
        '--no-auth-warning',
        ...args,
      ],
      { encoding: 'utf8' },
    );

  const env = (extra: Record<string, string> = {}): Record<string, string> => ({
    MULTIAGENTS_BACKEND: 'redis',
    REDIS_URL: redis.url,
    MULTIAGENTS_PREFIX: prefix,
    REDIS_USERNAME: 'saga',
    REDIS_PASSWORD: 's3cret/with#odd@chars',
    ...extra,
  });

  it('refuses a wrong password as a setting to fix (exit 78), without quoting it', async () => {
    const backend = await openBackend(parseServiceConfig(env({ REDIS_PASSWORD: 'not-it' }), { grpcPort: 0 }));
    try {
      const err: unknown = await backend.registry.list().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCode.Unauthenticated, retryable: false });
      expect(isConfigurationError(err)).toBe(true);
      expect((err as Error).message).not.toContain('not-it');
    } finally {
      await backend.close();
    }
  }, 30_000);

  it('runs the order saga with credentials from the environment', async () => {
    const config = parseServiceConfig(env(), { grpcPort: 0 });
    expect(await runOrderSaga(config, config, 12)).toEqual(expectedStates(12));
    // Closing a subscription ends its blocked read with CLIENT UNBLOCK: granted, never refused
    // (refused, every close waited out the read's block time).
    const stats = sagaCli('INFO', 'commandstats');
    const unblock = /^cmdstat_client\|unblock:calls=(\d+),.*rejected_calls=(\d+)/m.exec(stats);
    expect(Number(unblock?.[1])).toBeGreaterThan(0);
    expect(Number(unblock?.[2])).toBe(0);
  }, 60_000);

  it('refuses the same user outside its prefix, and refuses admin commands', () => {
    const cli = sagaCli;
    expect(cli('SET', `${prefix}:probe`, '1')).toContain('OK');
    expect(cli('SET', 'tenant-b:probe', '1')).toContain('NOPERM');
    expect(cli('GET', 'tenant-b:probe')).toContain('NOPERM');
    expect(cli('FLUSHALL')).toContain('NOPERM');
    expect(cli('CONFIG', 'GET', 'requirepass')).toContain('NOPERM');
  });

  it('another prefix on the same user cannot even open its backend', async () => {
    const config = parseServiceConfig(env({ MULTIAGENTS_PREFIX: 'tenant-b' }), { grpcPort: 0 });
    const backend = await openBackend(config);
    try {
      // A setting to fix, not a broker to wait for: the service stops at start (exit 78).
      const err: unknown = await backend.registry.list().catch((e: unknown) => e);
      expect(err).toMatchObject({
        code: ErrorCode.PermissionDenied,
        message: expect.stringMatching(/NOPERM/),
      });
      expect(isConfigurationError(err)).toBe(true);
    } finally {
      await backend.close();
    }
  });
});

describe('NATS: per-user permissions, a worker-manager limited to its workers', () => {
  let nats: ServerProcess;
  const prefix = 'shop';
  const consumer = (worker: string): string => `commands_2e${worker.replace(/\./g, '_2e')}__workers`;
  const workerManagerPermissions = (): string => {
    const publish = [
      // Read-only JetStream metadata: the backend checks its streams and buckets when it opens.
      '$JS.API.INFO',
      '$JS.API.STREAM.INFO.>',
      '$JS.API.CONSUMER.INFO.>',
      // Its workers' command consumers only: create, pull, acknowledge.
      ...WORKERS.flatMap((w) => [
        `$JS.API.CONSUMER.CREATE.${prefix}_BUS.${consumer(w)}.>`,
        `$JS.API.CONSUMER.CREATE.${prefix}_BUS.${consumer(w)}`,
        `$JS.API.CONSUMER.DURABLE.CREATE.${prefix}_BUS.${consumer(w)}`,
        `$JS.API.CONSUMER.MSG.NEXT.${prefix}_BUS.${consumer(w)}`,
        `$JS.ACK.${prefix}_BUS.${consumer(w)}.>`,
        `${prefix}_dlq.commands.${w}`,
      ]),
      // What it publishes: results, and heartbeats and progress on the events subject.
      `${prefix}.${Topics.results}`,
      `${prefix}.${Topics.events}`,
      // The replicas' registry (the definitions bucket's wm.* keys): its own announcements, and
      // the listing the start-up probe makes. Not the definitions (v.*).
      `$KV.${prefix}-definitions.wm.>`,
      `$JS.API.CONSUMER.CREATE.KV_${prefix}-definitions.*.$KV.${prefix}-definitions.wm.>`,
      `$JS.API.STREAM.MSG.GET.KV_${prefix}-definitions`,
    ];
    // Subscriptions: answers to its requests, and the control channel's cancel notices.
    const subscribe = ['_INBOX.>', `${prefix}_bc.${Topics.control}`];
    return `{ publish: { allow: ${JSON.stringify(publish)} }, subscribe: { allow: ${JSON.stringify(subscribe)} } }`;
  };
  // The README's grants for a worker-manager that hosts agents: its memo bucket on top (one replica).
  const agentManagerPermissions = (): string =>
    workerManagerPermissions().replace(
      '"] }',
      `", "$KV.${prefix}-memo.>", "$JS.API.STREAM.CREATE.KV_${prefix}-memo", "$JS.API.DIRECT.GET.KV_${prefix}-memo.>"] }`,
    );

  beforeAll(async () => {
    nats = await startNatsServer({
      config: `
        authorization {
          users = [
            { user: orchestrator, password: "o-secret" }
            { user: worker_manager, password: "w-secret", permissions: ${workerManagerPermissions()} }
            { user: agent_manager, password: "a-secret", permissions: ${agentManagerPermissions()} }
          ]
        }
      `,
    });
  }, 20_000);
  afterAll(() => nats?.stop());

  const env = (user: string, password: string): Record<string, string> => ({
    MULTIAGENTS_BACKEND: 'nats',
    NATS_URL: nats.url,
    MULTIAGENTS_PREFIX: prefix,
    NATS_USER: user,
    NATS_PASSWORD: password,
  });

  it('runs the order saga with a least-privilege worker-manager user', async () => {
    const main = parseServiceConfig(env('orchestrator', 'o-secret'), { grpcPort: 0 });
    const side = parseServiceConfig(env('worker_manager', 'w-secret'), { grpcPort: 0 });
    expect(await runOrderSaga(main, side, 12)).toEqual(expectedStates(12));
  }, 60_000);

  it('lets the worker-manager user pass the start-up probe and announce itself, not list definitions', async () => {
    const main = await openBackend(parseServiceConfig(env('orchestrator', 'o-secret'), { grpcPort: 0 }));
    const side = await openBackend(parseServiceConfig(env('worker_manager', 'w-secret'), { grpcPort: 0 }));
    try {
      // What openBackendWhenReachable waits for before the service says it is ready.
      await side.registry.list();
      const record = { managerId: 'wm-probe', seenAt: Date.now(), workers: [], capacity: 1, inFlight: 0 };
      await side.registry.announce(record, 60_000);
      expect((await main.registry.list()).map((r) => r.managerId)).toContain('wm-probe');
      expect((await side.registry.list()).map((r) => r.managerId)).toContain('wm-probe');
      await expect(side.definitions.list()).rejects.toThrow(/Permissions Violation/);
    } finally {
      await side.close();
      await main.close();
    }
  }, 60_000);

  it('lets a worker-manager user with the memo grants keep and read agent answers, on a bucket it makes', async () => {
    const backend = await openBackend(parseServiceConfig(env('agent_manager', 'a-secret'), { grpcPort: 0 }));
    try {
      const kept = await backend.memo.put('tx-1:draft', { answer: 'Paris', calls: 1 });
      expect(kept).toEqual({ answer: 'Paris', calls: 1 });
      // A second writer (a redelivered command on another replica) gets the first answer.
      expect(await backend.memo.put('tx-1:draft', { answer: 'Lyon', calls: 2 })).toEqual(kept);
      expect(await backend.memo.get('tx-1:draft')).toEqual(kept);
    } finally {
      await backend.close();
    }
  }, 60_000);

  it('refuses the worker-manager user a subject it may not use', async () => {
    const nc = await connect({ servers: nats.url, user: 'worker_manager', pass: 'w-secret' });
    const refusals: string[] = [];
    const watching = (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'error') refusals.push(status.error.message);
      }
    })();
    try {
      // Eavesdropping on every command, and forging one for a worker it does not host.
      const eavesdrop = nc.subscribe(`${prefix}.commands.>`);
      nc.publish(`${prefix}.commands.payment.refund_all`, 'forged');
      // Reading the runs bucket (inputs, outputs, context) directly.
      nc.publish(`$JS.API.STREAM.MSG.GET.KV_${prefix}-runs`, '{"last_by_subj":"$KV.shop-runs.x"}');
      await nc.flush();
      await waitFor(() => refusals.length >= 3, { timeoutMs: 5_000 });
      expect(refusals.join('\n')).toMatch(
        new RegExp(`Permissions Violation for Subscription to "?${prefix}\\.commands\\.>`, 'i'),
      );
      expect(refusals.join('\n')).toMatch(
        /Permissions Violation for Publish to "?shop\.commands\.payment\.refund_all/i,
      );
      expect(refusals.join('\n')).toMatch(
        /Permissions Violation for Publish to "?\$JS\.API\.STREAM\.MSG\.GET/i,
      );
      eavesdrop.unsubscribe();
    } finally {
      await nc.close();
      await watching;
    }
  }, 30_000);

  it('refuses a wrong password with a message that does not quote it, as a setting to fix (exit 78)', async () => {
    const refusal = openBackend(
      parseServiceConfig(env('worker_manager', 'not-the-password'), { grpcPort: 0 }),
    );
    await expect(refusal).rejects.toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('not-the-password') }),
    );
    const err: unknown = await refusal.catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.Unauthenticated, retryable: false });
    expect(isConfigurationError(err)).toBe(true);
  }, 30_000);
});

describe('TLS to the brokers (mutual, certificates generated in the test)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'broker-tls-'));
  const ca = createTestCa(dir);
  const server = ca.server();
  const client = ca.client('worker-manager');
  const tlsEnv = (prefix: string): Record<string, string> => ({
    [`${prefix}_TLS_CA`]: ca.certFile,
    [`${prefix}_TLS_CERT`]: client.certFile,
    [`${prefix}_TLS_KEY`]: client.keyFile,
  });

  it('Redis over rediss:// with a client certificate runs the order saga; no client certificate, no connection', async () => {
    const tlsPort = await freePort();
    const redis = await startRedisServer({
      args: [
        '--tls-port',
        String(tlsPort),
        '--tls-cert-file',
        server.certFile,
        '--tls-key-file',
        server.keyFile,
        '--tls-ca-cert-file',
        ca.certFile,
        '--tls-auth-clients',
        'yes',
      ],
    });
    try {
      const config = parseServiceConfig(
        {
          MULTIAGENTS_BACKEND: 'redis',
          REDIS_URL: `rediss://127.0.0.1:${tlsPort}`,
          MULTIAGENTS_PREFIX: 'tls',
          ...tlsEnv('REDIS'),
        },
        { grpcPort: 0 },
      );
      expect(await runOrderSaga(config, config, 4)).toEqual(expectedStates(4));
      // Without a client certificate the handshake fails.
      const { REDIS_TLS_CERT: _c, REDIS_TLS_KEY: _k, ...caOnly } = tlsEnv('REDIS');
      const anonymous = await openBackend(
        parseServiceConfig(
          { MULTIAGENTS_BACKEND: 'redis', REDIS_URL: `rediss://127.0.0.1:${tlsPort}`, ...caOnly },
          { grpcPort: 0 },
        ),
      );
      try {
        await expect(anonymous.registry.list()).rejects.toThrow();
      } finally {
        await anonymous.close();
      }
    } finally {
      await redis.stop();
    }
  }, 60_000);

  it('NATS over TLS with a client certificate runs the order saga', async () => {
    const nats = await startNatsServer({
      config: `tls { cert_file: "${server.certFile}", key_file: "${server.keyFile}", ca_file: "${ca.certFile}", verify: true }`,
    });
    try {
      const config = parseServiceConfig(
        {
          MULTIAGENTS_BACKEND: 'nats',
          NATS_URL: `tls://127.0.0.1:${nats.port}`,
          MULTIAGENTS_PREFIX: 'tls',
          ...tlsEnv('NATS'),
        },
        { grpcPort: 0 },
      );
      expect(await runOrderSaga(config, config, 4)).toEqual(expectedStates(4));
    } finally {
      await nats.stop();
    }
  }, 60_000);
});
