/**
 * Eager dispatch's own crash point: an orchestrator that runs commands on the workers of its own
 * process is killed -9 while they hold them. Those commands were never in a stream; the runs say
 * they were sent. Another orchestrator's recovery sweep must find the runs and send the commands
 * again (same command ids) on the bus: every run completes, none waits forever. Real processes,
 * a private Redis (AOF, fsync always) or NATS server, the gRPC API.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type MultiAgentsClient } from '@multiagents/client';
import {
  freePort,
  ServiceProcess,
  startNatsServer,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { REPO_ROOT } from './fault-scenario';

jest.setTimeout(300_000);

/** More runs than `eager.hold` has slots (16): the rest of its commands go on the bus. */
const RUNS = 24;
const SLOTS = 16;

const WORKFLOW = `id: eager_hold
version: 1
steps:
  - name: first
    worker: eager.first
  - name: hold
    worker: eager.hold
`;

let broker: ServerProcess | undefined;
let client: MultiAgentsClient | undefined;
const services: ServiceProcess[] = [];

beforeAll(() => {
  execFileSync('bash', ['scripts/build-quiet.sh', '@multiagents/orchestrator', '@multiagents/fault-tests'], {
    cwd: REPO_ROOT,
    stdio: 'inherit',
    timeout: 280_000,
  });
}, 300_000);

afterEach(async () => {
  client?.close();
  client = undefined;
  for (const service of services.splice(0)) await service.stop();
  await broker?.stop();
  broker = undefined;
});

function heldTxIds(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

it.each(['redis', 'nats'] as const)(
  'on %s, an orchestrator killed -9 while its own workers hold commands: another one sends them again and every run completes',
  async (kind) => {
    broker =
      kind === 'redis'
        ? await startRedisServer({ appendOnly: true, appendFsync: 'always' })
        : await startNatsServer();
    const dir = mkdtempSync(join(tmpdir(), 'eager-dispatch-'));
    const definitions = join(dir, 'eager-hold.yaml');
    writeFileSync(definitions, WORKFLOW);
    const holdLog = join(dir, 'held.txt');
    const logDir = join(REPO_ROOT, 'tmp', 'fault-logs', `eager-dispatch-${kind}`);
    const env = {
      MULTIAGENTS_BACKEND: kind,
      [kind === 'redis' ? 'REDIS_URL' : 'NATS_URL']: broker.url,
      MULTIAGENTS_PREFIX: `eager-${kind}`,
      MULTIAGENTS_WORKER_MODULES: join(REPO_ROOT, 'tests/fault/dist/eager-workers.js'),
      MULTIAGENTS_DEFINITIONS: definitions,
      // A run idle this long is looked at by the recovery sweep (on Redis, also its interval).
      MULTIAGENTS_REDISPATCH_AFTER_MS: '1000',
      LOG_LEVEL: 'warn',
    };
    const orchestrator = join(REPO_ROOT, 'apps/orchestrator/dist/main.js');
    const victimPort = await freePort();
    const victim = new ServiceProcess(
      `eager-victim-${kind}`,
      orchestrator,
      { ...env, EAGER_HOLD_LOG: holdLog, GRPC_PORT: String(victimPort) },
      logDir,
      await freePort(),
    );
    services.push(victim);
    await victim.start();
    client = connect(`127.0.0.1:${victimPort}`);
    const started: string[] = [];
    for (let i = 0; i < RUNS; i++) started.push((await client.startWorkflow('eager_hold', { i })).txId);

    // The fault: every slot of eager.hold taken by a command handed over in this process.
    await waitFor(() => heldTxIds(holdLog).length >= SLOTS, {
      timeoutMs: 60_000,
      description: `${SLOTS} held commands`,
    });
    const before = await victim.stats();
    victim.signal('SIGKILL');
    expect(await victim.exited()).toEqual({ code: null, signal: 'SIGKILL' });
    const held = heldTxIds(holdLog);
    // Evidence the fault hit what it meant to: the held commands were handed over without the
    // bus (both steps of every run that reached `hold` locally), and held when the process died.
    expect(held.length).toBe(SLOTS);
    expect(before['localDispatched']).toBeGreaterThanOrEqual(RUNS + SLOTS);
    client.close();

    const survivorPort = await freePort();
    const survivor = new ServiceProcess(
      `eager-survivor-${kind}`,
      orchestrator,
      { ...env, GRPC_PORT: String(survivorPort) },
      logDir,
      await freePort(),
    );
    services.push(survivor);
    await survivor.start();
    client = connect(`127.0.0.1:${survivorPort}`);
    const survivorClient = client;
    const states = async (): Promise<string[]> =>
      Promise.all(started.map(async (txId) => (await survivorClient.getWorkflow(txId)).state));
    await waitFor(async () => (await states()).every((state) => state === 'completed'), {
      timeoutMs: 120_000,
      intervalMs: 250,
      description: `all ${RUNS} runs completed`,
    });
    for (const txId of held) {
      const run = await survivorClient.getWorkflow(txId);
      // Sent again with its command id: the one attempt the dead process started, finished elsewhere.
      expect(run.steps['hold']?.attempts.map((a) => a.attempt)).toEqual([1]);
      expect(run.steps['hold']?.output).toEqual({ held: false });
    }
    // Only a recovery sweep could send them: they were in no stream, and the step has no timeout.
    const after = await survivor.stats();
    expect(after['redispatched']).toBeGreaterThanOrEqual(SLOTS);
  },
);
