/**
 * Issue 12 item 4: signed bus messages, end to end on real Redis and NATS servers. An orchestrator
 * and a worker-manager, each with its own key and each configured from the environment's variables,
 * run order sagas while an attacker with write access to the broker injects unsigned, forged and
 * wrongly-keyed envelopes into every topic (the commands of a worker, the results, the events).
 * Every injected message is dead-lettered with its reason and counted; no forged command runs a
 * worker, no forged result completes a step, and every run finishes as it would have.
 */
import {
  EventType,
  Groups,
  RunState,
  Topics,
  createKeyRing,
  type Envelope,
  type EnvelopeCodecOptions,
} from '@multiagents/contracts';
import { Orchestrator, WorkflowBuilder } from '@multiagents/core';
import {
  makeEnvelope,
  itOnEachBroker,
  startNatsServer,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { WorkerManager, defineWorker } from '@multiagents/worker-sdk';
import { connect } from '@nats-io/transport-node';
import { execFileSync } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openBackend, type Backend } from './open-backend';
import { parseServiceConfig, type ServiceConfig } from './service-config';

const RUNS = 30;
const orchestratorKey = randomBytes(32);
const workerKey = randomBytes(32);
const b64 = (key: Buffer): string => key.toString('base64');

/** What each service reads from its environment (the same variables the apps take). */
function serviceEnv(
  backend: 'redis' | 'nats',
  url: string,
  prefix: string,
): Record<string, Record<string, string>> {
  const base = {
    MULTIAGENTS_BACKEND: backend,
    [backend === 'redis' ? 'REDIS_URL' : 'NATS_URL']: url,
    MULTIAGENTS_PREFIX: prefix,
  };
  return {
    orchestrator: {
      ...base,
      MULTIAGENTS_BUS_SIGNING_KEY: `orch-1:${b64(orchestratorKey)}`,
      MULTIAGENTS_BUS_VERIFICATION_KEYS: `orch-1:${b64(orchestratorKey)},wm-1:${b64(workerKey)}`,
    },
    workerManager: {
      ...base,
      MULTIAGENTS_BUS_SIGNING_KEY: `wm-1:${b64(workerKey)}`,
      // Only the orchestrator's key: a worker-manager executes what an orchestrator dispatched.
      MULTIAGENTS_BUS_VERIFICATION_KEYS: `orch-1:${b64(orchestratorKey)}`,
    },
    // Observers read lifecycle events (orchestrator) and worker heartbeats (worker-managers).
    observer: {
      ...base,
      MULTIAGENTS_BUS_VERIFICATION_KEYS: `orch-1:${b64(orchestratorKey)},wm-1:${b64(workerKey)}`,
    },
  };
}

const workflow = new WorkflowBuilder('signed_order')
  .step('reserve_inventory', 'signed.reserve', { compensation: 'signed.release' })
  .step('charge_payment', 'signed.charge', { compensation: 'signed.refund' })
  .step('ship_order', 'signed.ship')
  .build();

/** Holds every `ship` until opened, so forged results for live commands arrive while they run. */
class Gate {
  entered = 0;
  private open!: () => void;
  private readonly opened = new Promise<void>((resolve) => (this.open = resolve));
  async pass(): Promise<void> {
    this.entered += 1;
    await this.opened;
  }
  release(): void {
    this.open();
  }
}

interface Attack {
  readonly name: string;
  /** How the attacker's bus signs: nothing, a made-up key under a real id, or the worker's key. */
  readonly codec: EnvelopeCodecOptions | undefined;
  readonly reason: string;
}

const attacks: readonly Attack[] = [
  { name: 'unsigned', codec: undefined, reason: 'unsigned' },
  {
    name: 'forged',
    codec: { keys: createKeyRing([['orch-1', randomBytes(32)]]) },
    reason: 'bad_signature',
  },
  {
    name: 'unknown-key',
    codec: { keys: createKeyRing([['attacker', randomBytes(32)]]) },
    reason: 'unknown_key',
  },
];

async function scenario(backendName: 'redis' | 'nats', server: ServerProcess): Promise<void> {
  const prefix = `sig-${backendName}-${Date.now().toString(36)}`;
  const env = serviceEnv(backendName, server.url, prefix);
  const config = (name: string): ServiceConfig =>
    parseServiceConfig(env[name] as Record<string, string>, { grpcPort: 0 });
  const opened: Backend[] = [];
  const open = async (c: ServiceConfig): Promise<Backend> => {
    const backend = await openBackend(c, { maintenance: false });
    opened.push(backend);
    return backend;
  };
  const main = await open(config('orchestrator'));
  const side = await open(config('workerManager'));
  const observer = await open(config('observer'));
  const executed: string[] = [];
  const gate = new Gate();
  const worker = (name: string, output: (n: number) => unknown, hold = false) =>
    defineWorker<{ n: number }, unknown>(
      name,
      async (input, ctx) => {
        executed.push(`${name}:${ctx.idempotencyKey}`);
        if (hold) await gate.pass();
        return output(input.n);
      },
      { concurrency: RUNS, timeoutMs: 60_000 },
    );
  const orchestrator = new Orchestrator({
    bus: main.bus,
    runs: main.runs,
    definitions: main.definitions,
    registry: main.registry,
    ...main.orchestrator,
  });
  const manager = new WorkerManager({
    bus: side.bus,
    workers: [
      worker('signed.reserve', (n) => ({ reservationId: `r-${n}` })),
      worker('signed.release', () => ({ released: true })),
      worker('signed.charge', (n) => ({ paymentId: `p-${n}` })),
      worker('signed.refund', () => ({ refunded: true })),
      worker('signed.ship', (n) => ({ trackingId: `t-${n}` }), true),
    ] as ReturnType<typeof defineWorker>[],
    heartbeatIntervalMs: 60_000,
  });
  const observed: Envelope[] = [];
  const watching = await observer.bus.subscribe(
    Topics.events,
    { group: 'observer', consumer: 'observer-1', startFrom: 'earliest' },
    (delivery) => {
      observed.push(delivery.envelope);
      return Promise.resolve();
    },
  );
  try {
    await orchestrator.start();
    await manager.start();
    await orchestrator.registerWorkflow(workflow);
    const txIds: string[] = [];
    for (let n = 0; n < RUNS; n += 1) {
      txIds.push((await orchestrator.startWorkflow('signed_order', { n })).txId);
    }
    // Every run waits in ship_order: its command was dispatched, its worker is running.
    await waitFor(() => gate.entered === RUNS, {
      timeoutMs: 30_000,
      description: `every run in ship_order (${gate.entered} so far, ${executed.length} steps ran)`,
    });
    const victim = txIds[0] as string;
    const injected: Array<{ topic: string; attack: Attack }> = [];
    for (const attack of attacks) {
      const attacker = await openBackend(
        {
          backend: backendName,
          ...(backendName === 'redis' ? { redisUrl: server.url } : { natsUrl: server.url }),
          prefix,
          ...(attack.codec === undefined ? {} : { busCodec: attack.codec }),
        },
        {},
      );
      try {
        // A refund for a made-up payment, straight onto the refund worker's command stream.
        await attacker.bus.publish(Topics.command('signed.refund'), [
          makeEnvelope({
            type: EventType.StepCommand,
            txId: `made-up-${attack.name}`,
            workflowId: 'signed_order',
            step: 'charge_payment',
            payload: {
              commandId: `made-up-${attack.name}:charge_payment:undo:1`,
              worker: 'signed.refund',
              input: { n: -1 },
              idempotencyKey: `made-up-${attack.name}:charge_payment:undo`,
              compensation: true,
            },
          }),
        ]);
        // A result for a live command whose worker is still running.
        await attacker.bus.publish(Topics.results, [
          makeEnvelope({
            type: EventType.StepResult,
            txId: victim,
            workflowId: 'signed_order',
            step: 'ship_order',
            payload: {
              commandId: `${victim}:ship_order:1`,
              worker: 'signed.ship',
              ok: true,
              output: { trackingId: `forged-${attack.name}` },
            },
          }),
        ]);
        // A lifecycle event observers would count.
        await attacker.bus.publish(Topics.events, [
          makeEnvelope({ type: EventType.WorkflowCompleted, txId: victim, workflowId: 'signed_order' }),
        ]);
        injected.push(
          { topic: Topics.command('signed.refund'), attack },
          { topic: Topics.results, attack },
          { topic: Topics.events, attack },
        );
      } finally {
        await attacker.close();
      }
    }

    // Each injected message is dead-lettered by the group that consumes its topic, with its reason.
    for (const topic of [Topics.command('signed.refund'), Topics.results, Topics.events]) {
      await waitFor(async () => (await main.bus.listDeadLetters(topic)).length >= attacks.length, {
        timeoutMs: 20_000,
      });
      const letters = await main.bus.listDeadLetters(topic);
      expect(letters.map((letter) => /\((\w+)\)/.exec(letter.error)?.[1]).sort()).toEqual(
        injected
          .filter((i) => i.topic === topic)
          .map((i) => i.attack.reason)
          .sort(),
      );
    }
    // The forged result did not complete the victim's step: it is still running.
    const victimRun = await orchestrator.getRun(victim);
    expect(victimRun.state).toBe(RunState.Running);
    expect(victimRun.context).not.toHaveProperty('trackingId');

    gate.release();
    const finals = await Promise.all(
      txIds.map((txId) => orchestrator.waitForTerminal(txId, { timeoutMs: 30_000 })),
    );
    expect(finals.map((run) => run.state)).toEqual(txIds.map(() => RunState.Completed));
    for (const run of finals) {
      const n = txIds.indexOf(run.txId);
      expect(run.context).toMatchObject({ trackingId: `t-${n}`, paymentId: `p-${n}` });
    }
    // No forged command ran a worker; each real step ran once.
    expect(executed.filter((e) => e.startsWith('signed.refund') || e.includes('made-up'))).toEqual([]);
    expect(executed).toHaveLength(RUNS * 3);
    // Counted where the refusal happened: the orchestrator refused the results, the
    // worker-manager the commands, the observer the events.
    const refused = (backend: Backend): number => backend.bus.counters?.()['refusedEnvelopes'] ?? 0;
    expect(refused(main)).toBe(attacks.length);
    expect(refused(side)).toBe(attacks.length);
    await waitFor(() => refused(observer) === attacks.length, { timeoutMs: 10_000 });
    // The observer saw the orchestrator's real events and never a forged one.
    await waitFor(() => observed.filter((e) => e.type === EventType.WorkflowTransitioned).length > 0);
    expect(observed.some((e) => e.type === EventType.WorkflowCompleted && e.id.startsWith('env-'))).toBe(
      false,
    );
    // What nobody consumes is left neither pending nor lost.
    await waitFor(async () => (await main.bus.pendingCount(Topics.results, Groups.orchestrators)) === 0);
  } finally {
    gate.release();
    await watching.close();
    await manager.close({ drainTimeoutMs: 0 });
    await orchestrator.close();
    for (const backend of opened.reverse()) await backend.close();
  }
}

describe('signed bus messages: forged and unsigned envelopes injected while runs go on', () => {
  itOnEachBroker(scenario, 90_000);
});

/**
 * Rotation without a stop, as an operator rolls it out, of the signing keys and the payload keys at
 * once: (1) every service learns the new keys (replaced one by one, verifying and decrypting old
 * and new), (2) every service signs and encrypts with them (new replicas start, the old ones leave
 * mid-run), all while 500 sagas are in flight.
 * Nothing is lost or refused: every run completes, every step ran, and no dead letter appears.
 */
async function rotation(backendName: 'redis' | 'nats', server: ServerProcess): Promise<void> {
  const RUNS_IN_FLIGHT = 500;
  const prefix = `rot-${backendName}-${Date.now().toString(36)}`;
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const wm = randomBytes(32);
  const base = {
    MULTIAGENTS_BACKEND: backendName,
    [backendName === 'redis' ? 'REDIS_URL' : 'NATS_URL']: server.url,
    MULTIAGENTS_PREFIX: prefix,
  };
  const p1 = `p1:${randomBytes(32).toString('base64')}`;
  const p2 = `p2:${randomBytes(32).toString('base64')}`;
  const config = (signing: string, verification: string, payloadKeys: string): ServiceConfig =>
    parseServiceConfig(
      {
        ...base,
        MULTIAGENTS_BUS_SIGNING_KEY: signing,
        MULTIAGENTS_BUS_VERIFICATION_KEYS: verification,
        MULTIAGENTS_PAYLOAD_KEYS: payloadKeys,
      },
      { grpcPort: 0 },
    );
  const opened: Backend[] = [];
  const closers: Array<() => Promise<void>> = [];
  const executed = new Map<string, number>();
  const rotationWorkflow = new WorkflowBuilder('rotating_order')
    .step('reserve_inventory', 'rot.reserve')
    .step('charge_payment', 'rot.charge')
    .step('ship_order', 'rot.ship')
    .build();
  const startOrchestrator = async (c: ServiceConfig): Promise<Orchestrator> => {
    const backend = await openBackend(c);
    opened.push(backend);
    const orchestrator = new Orchestrator({
      bus: backend.bus,
      runs: backend.runs,
      definitions: backend.definitions,
      registry: backend.registry,
      ...backend.orchestrator,
    });
    closers.push(() => orchestrator.close());
    await orchestrator.start();
    return orchestrator;
  };
  const startWorkerManager = async (c: ServiceConfig): Promise<WorkerManager> => {
    const backend = await openBackend(c);
    opened.push(backend);
    const manager = new WorkerManager({
      bus: backend.bus,
      workers: ['rot.reserve', 'rot.charge', 'rot.ship'].map((name) =>
        defineWorker<{ n: number }, unknown>(name, (input, ctx) => {
          executed.set(ctx.idempotencyKey, (executed.get(ctx.idempotencyKey) ?? 0) + 1);
          return { [name.replace('rot.', '')]: input.n };
        }),
      ),
      heartbeatIntervalMs: 60_000,
    });
    closers.push(() => manager.close({ drainTimeoutMs: 10_000 }));
    await manager.start();
    return manager;
  };
  const orchestratorKeys = (current: string): string =>
    `${current},${current.startsWith('k1') ? `k2:${b64(k2)}` : `k1:${b64(k1)}`},wm-1:${b64(wm)}`;
  try {
    const before = await startOrchestrator(config(`k1:${b64(k1)}`, `k1:${b64(k1)},wm-1:${b64(wm)}`, p1));
    const oldManager = await startWorkerManager(config(`wm-1:${b64(wm)}`, `k1:${b64(k1)}`, p1));
    await before.registerWorkflow(rotationWorkflow);
    const txIds: string[] = [];
    const startSome = async (from: number, to: number, via: Orchestrator): Promise<void> => {
      for (let n = from; n < to; n += 1) txIds.push((await via.startWorkflow('rotating_order', { n })).txId);
    };
    await startSome(0, 150, before);
    // Step 1: every service learns the new keys (k2 verifies, p2 decrypts), replaced one by one mid-run.
    const manager2 = await startWorkerManager(
      config(`wm-1:${b64(wm)}`, `k1:${b64(k1)},k2:${b64(k2)}`, `${p1},${p2}`),
    );
    await oldManager.close({ drainTimeoutMs: 10_000 });
    const middle = await startOrchestrator(
      config(`k1:${b64(k1)}`, orchestratorKeys(`k1:${b64(k1)}`), `${p1},${p2}`),
    );
    await startSome(150, 250, before);
    await before.close();
    await startSome(250, 350, middle);
    // Step 2: everyone signs with k2 and encrypts with p2; the step-1 services leave with runs in flight.
    const after = await startOrchestrator(
      config(`k2:${b64(k2)}`, orchestratorKeys(`k2:${b64(k2)}`), `${p2},${p1}`),
    );
    await startWorkerManager(config(`wm-1:${b64(wm)}`, `k1:${b64(k1)},k2:${b64(k2)}`, `${p2},${p1}`));
    await startSome(350, RUNS_IN_FLIGHT, after);
    await middle.close();
    await manager2.close({ drainTimeoutMs: 10_000 });
    const finals = await Promise.all(txIds.map((txId) => after.waitForTerminal(txId, { timeoutMs: 60_000 })));
    expect(finals.filter((run) => run.state !== RunState.Completed)).toEqual([]);
    expect(executed.size).toBe(RUNS_IN_FLIGHT * 3);
    const refused = opened.reduce((sum, b) => sum + (b.bus.counters?.()['refusedEnvelopes'] ?? 0), 0);
    expect(refused).toBe(0);
    for (const topic of [Topics.results, ...['rot.reserve', 'rot.charge', 'rot.ship'].map(Topics.command)]) {
      expect(await (opened[0] as Backend).bus.listDeadLetters(topic)).toEqual([]);
    }
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    for (const backend of opened.reverse()) await backend.close();
  }
}

describe('signing and payload key rotation in the middle of 500 sagas', () => {
  itOnEachBroker(rotation, 120_000);
});

/**
 * Issue 12 item 5: with MULTIAGENTS_PAYLOAD_KEYS every envelope's payload (start input in the
 * commands, worker outputs in the results, transition events) is AES-256-GCM ciphertext on the
 * wire and in the streams, and what the broker keeps at rest is sealed: the run records' input,
 * outputs, signals and errors, the agents' memos and the monitor's timelines. The orchestrator
 * decrypts in memory, so CEL conditions and mappings still work.
 */
describe('encrypted payloads on the bus and at rest', () => {
  const CARD = '4111111111111111';
  const payloadKey = `pk-1:${randomBytes(32).toString('base64')}`;
  const secretWorkflow = new WorkflowBuilder('secret_order')
    .step('charge_payment', 'enc.charge', {
      input: { card: 'input.card', n: 'input.n' },
      retry: { maxAttempts: 2, initialDelayMs: 10 },
    })
    .step('ship_order', 'enc.ship', { when: 'context.charged == input.card' })
    .build();

  async function runSecretSagas(
    backendName: 'redis' | 'nats',
    url: string,
    prefix: string,
    keys: Record<string, string> = { MULTIAGENTS_PAYLOAD_KEYS: payloadKey },
  ): Promise<string[]> {
    const config = parseServiceConfig(
      {
        MULTIAGENTS_BACKEND: backendName,
        [backendName === 'redis' ? 'REDIS_URL' : 'NATS_URL']: url,
        MULTIAGENTS_PREFIX: prefix,
        ...keys,
        MULTIAGENTS_BUS_SIGNING_KEY: `orch-1:${b64(orchestratorKey)}`,
      },
      { grpcPort: 0 },
    );
    const main = await openBackend(config);
    const side = await openBackend(config);
    const orchestrator = new Orchestrator({
      bus: main.bus,
      runs: main.runs,
      definitions: main.definitions,
      registry: main.registry,
      ...main.orchestrator,
    });
    const manager = new WorkerManager({
      bus: side.bus,
      workers: [
        defineWorker<{ card: string; n: number }, unknown>('enc.charge', (input, ctx) => {
          // The first run's first attempt fails quoting the card, as real errors quote what they
          // choked on: every attempt's error is kept in the run record. (One failure: more in a
          // row would open the worker's circuit breaker.)
          if (input.n === 0 && ctx.attempt === 1) throw new Error(`card ${input.card} declined, try again`);
          return { charged: input.card };
        }),
        defineWorker<{ card: string }, unknown>('enc.ship', async (input, ctx) => {
          // What an agent keeps in its memo: an answer about the data it was given.
          await side.memo.put(ctx.idempotencyKey, { note: `shipped the order paid with ${input.card}` });
          return { shipped: true };
        }),
      ] as ReturnType<typeof defineWorker>[],
      heartbeatIntervalMs: 60_000,
    });
    try {
      await orchestrator.start();
      await manager.start();
      await orchestrator.registerWorkflow(secretWorkflow);
      const txIds: string[] = [];
      for (let n = 0; n < 10; n += 1) {
        txIds.push((await orchestrator.startWorkflow('secret_order', { card: CARD, n })).txId);
      }
      const finals = await Promise.all(
        txIds.map((txId) => orchestrator.waitForTerminal(txId, { timeoutMs: 30_000 })),
      );
      // The event-monitor's timelines: a failed attempt's lifecycle event quotes the card.
      const failed = finals[0]?.steps['charge_payment']?.attempts[0]?.error;
      expect(failed?.message).toContain(CARD);
      await main.timelines.append(
        txIds[0] as string,
        [
          {
            version: 2,
            state: RunState.Running,
            time: Date.now(),
            workflowId: 'secret_order',
            events: [
              {
                type: EventType.StepRetrying,
                state: RunState.Running,
                step: 'charge_payment',
                error: failed,
              },
            ],
          },
        ],
        60_000,
      );
      expect((await side.timelines.get(txIds[0] as string))?.[0]?.events[0]?.['error']).toEqual(failed);
      expect(await side.memo.get(`${txIds[0]}:ship_order`)).toEqual({
        note: `shipped the order paid with ${CARD}`,
      });
      return finals.map((run) => `${run.state}:${String(run.context['shipped'])}`);
    } finally {
      await manager.close({ drainTimeoutMs: 0 });
      await orchestrator.close();
      await side.close();
      await main.close();
    }
  }

  it('on Redis: streams and run records hold ciphertext, and the runs complete with their conditions', async () => {
    const redis = await startRedisServer();
    try {
      const states = await runSecretSagas('redis', redis.url, 'enc');
      expect(states).toEqual(Array.from({ length: 10 }, () => 'completed:true'));
      const cli = (...args: string[]): string =>
        execFileSync('redis-cli', ['-p', String(redis.port), ...args], { encoding: 'latin1' });
      // Every key: the streams (commands, results, events) and the run records at rest.
      const keys = cli('--scan').split('\n').filter(Boolean);
      const dump = (key: string): string => {
        const type = cli('TYPE', key).trim();
        if (type === 'stream') return cli('XRANGE', key, '-', '+');
        if (type === 'hash') return cli('HGETALL', key);
        if (type === 'string') return cli('GET', key);
        if (type === 'zset') return cli('ZRANGE', key, '0', '-1');
        return '';
      };
      const types = new Set(keys.map((key) => cli('TYPE', key).trim()));
      expect(types).toEqual(expect.objectContaining(new Set(['stream', 'hash'])));
      let bytes = 0;
      for (const key of keys) {
        const raw = dump(key);
        bytes += raw.length;
        expect({ key, plaintext: raw.includes(CARD) || raw.includes('"charged"') }).toEqual({
          key,
          plaintext: false,
        });
      }
      expect(bytes).toBeGreaterThan(1_000);
    } finally {
      await redis.stop();
    }
  }, 60_000);

  it('with keys a KMS wrapped: the services unwrap them through the KMS module, and hold ciphertext at rest', async () => {
    // A KMS of the test's own: a module holding the key encryption key, data keys wrapped under it.
    const kek = randomBytes(32);
    const dir = mkdtempSync(join(tmpdir(), 'kms-int-'));
    const kmsModule = join(dir, 'kms.cjs');
    writeFileSync(
      kmsModule,
      `const { createDecipheriv } = require('node:crypto');
const KEK = Buffer.from('${kek.toString('hex')}', 'hex');
exports.unwrapKey = async (wrapped, keyId) => {
  const decipher = createDecipheriv('aes-256-gcm', KEK, wrapped.subarray(0, 12));
  decipher.setAAD(Buffer.from(keyId));
  decipher.setAuthTag(wrapped.subarray(12, 28));
  return Buffer.concat([decipher.update(wrapped.subarray(28)), decipher.final()]);
};
`,
    );
    const dataKey = randomBytes(32);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', kek, iv);
    cipher.setAAD(Buffer.from('pk-kms'));
    const sealed = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    const wrapped = Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64');
    const redis = await startRedisServer();
    try {
      const states = await runSecretSagas('redis', redis.url, 'kms', {
        MULTIAGENTS_PAYLOAD_KEYS_WRAPPED: `pk-kms:${wrapped}`,
        MULTIAGENTS_KMS_MODULE: kmsModule,
      });
      expect(states).toEqual(Array.from({ length: 10 }, () => 'completed:true'));
      const cli = (...args: string[]): string =>
        execFileSync('redis-cli', ['-p', String(redis.port), ...args], { encoding: 'latin1' });
      const runKeys = cli('--scan', '--pattern', '*run*').split('\n').filter(Boolean);
      expect(runKeys.length).toBeGreaterThan(0);
      for (const key of runKeys) {
        const type = cli('TYPE', key).trim();
        const raw =
          type === 'hash' ? cli('HGETALL', key) : type === 'stream' ? cli('XRANGE', key, '-', '+') : '';
        expect({ key, plaintext: raw.includes(CARD) }).toEqual({ key, plaintext: false });
      }
      // The same data key given directly reads what the KMS-configured services wrote.
      const direct = await openBackend(
        parseServiceConfig(
          {
            MULTIAGENTS_BACKEND: 'redis',
            REDIS_URL: redis.url,
            MULTIAGENTS_PREFIX: 'kms',
            MULTIAGENTS_PAYLOAD_KEYS: `pk-kms:${dataKey.toString('base64')}`,
          },
          { grpcPort: 0 },
        ),
      );
      try {
        const page = await direct.runs.list({ workflowId: 'secret_order' }, 20);
        expect(page.runs).toHaveLength(10);
        expect(page.runs.every((run) => run.input['card'] === CARD)).toBe(true);
      } finally {
        await direct.close();
      }
    } finally {
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('on NATS: every message on the bus and the KV subjects is ciphertext', async () => {
    const nats = await startNatsServer();
    const tap = await connect({ servers: nats.url });
    const seen: Buffer[] = [];
    // The bus subjects and the KV buckets' subjects (run records at rest).
    const kv = tap.subscribe('$KV.>', {
      callback: (_err, msg) => {
        seen.push(Buffer.from(msg.data));
      },
    });
    const subscription = tap.subscribe('enc.>', {
      callback: (_err, msg) => {
        seen.push(Buffer.from(msg.data));
      },
    });
    try {
      const states = await runSecretSagas('nats', nats.url, 'enc');
      expect(states).toEqual(Array.from({ length: 10 }, () => 'completed:true'));
      await tap.flush();
      expect(seen.length).toBeGreaterThanOrEqual(40);
      expect(seen.filter((data) => data.includes(CARD) || data.includes('"charged"'))).toEqual([]);
    } finally {
      subscription.unsubscribe();
      kv.unsubscribe();
      await tap.close();
      await nats.stop();
    }
  }, 60_000);
});
