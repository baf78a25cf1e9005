// A worker-manager process killed -9 right after the model answered (the answer recorded, no
// result published, the command not acknowledged): the command is redelivered to another
// replica, which returns the recorded answer without calling the model. Real processes, a
// private Redis or NATS (the memo is the worker-manager's own, on that broker), the fake
// OpenAI-compatible server over loopback HTTP; the model calls counted there.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startFakeLlmServer, type FakeLlmServer } from '@multiagents/agents';
import { openBackend, type Backend } from '@multiagents/backends';
import {
  EventType,
  Groups,
  Topics,
  type Envelope,
  type StepCommandPayload,
  type StepResultPayload,
} from '@multiagents/contracts';
import type { Subscription } from '@multiagents/core';
import {
  freePort,
  ServiceProcess,
  startNatsServer,
  startRedisServer,
  waitFor,
  type ServerProcess,
} from '@multiagents/testing';
import { REPO_ROOT } from './fault-scenario';

jest.setTimeout(600_000);

const AGENT = 'research.answer';
const API_KEY = 'sk-fault-agent-test';
const PREFIX = 'agent-redelivery';

let broker: ServerProcess | undefined;
let llm: FakeLlmServer | undefined;
let backend: Backend | undefined;
let observer: Subscription | undefined;
const services: ServiceProcess[] = [];

beforeAll(() => {
  execFileSync(
    'bash',
    ['scripts/build-quiet.sh', '@multiagents/worker-manager', '@multiagents/fault-tests'],
    {
      cwd: REPO_ROOT,
      stdio: 'inherit',
      timeout: 540_000,
    },
  );
});

afterEach(async () => {
  for (const service of services.splice(0)) await service.stop();
  await observer?.close();
  await backend?.close();
  await llm?.close();
  await broker?.stop();
  observer = undefined;
  backend = undefined;
  llm = undefined;
  broker = undefined;
});

function command(): Envelope<StepCommandPayload> {
  const commandId = 'tx-1:answer:1';
  return {
    id: `${commandId}:command`,
    type: EventType.StepCommand,
    txId: 'tx-1',
    workflowId: 'research',
    step: 'answer',
    attempt: 1,
    time: Date.now(),
    headers: {},
    payload: {
      commandId,
      worker: AGENT,
      input: { question: 'What is the capital of France?' },
      idempotencyKey: 'tx-1:answer',
      compensation: false,
    },
  };
}

it.each(['redis', 'nats'] as const)(
  'on %s, a worker-manager killed -9 after the model answered: the redelivered command does not call the model again',
  async (kind) => {
    broker = kind === 'redis' ? await startRedisServer() : await startNatsServer();
    const brokerUrl = { [kind === 'redis' ? 'redisUrl' : 'natsUrl']: broker.url };
    llm = await startFakeLlmServer({
      script: [{ fields: { answer: 'Paris', sources: ['atlas'] } }],
      apiKey: API_KEY,
    });
    backend = await openBackend({ backend: kind, ...brokerUrl, prefix: PREFIX });
    const results: Envelope<StepResultPayload>[] = [];
    observer = await backend.bus.subscribe(
      Topics.results,
      { group: Groups.orchestrators, consumer: 'test' },
      async ({ envelope }) => {
        if (envelope.type === EventType.StepResult) results.push(envelope as Envelope<StepResultPayload>);
      },
    );
    const logDir = join(REPO_ROOT, 'tmp', 'fault-logs', `agent-redelivery-${kind}`);
    const env = {
      MULTIAGENTS_BACKEND: kind,
      [kind === 'redis' ? 'REDIS_URL' : 'NATS_URL']: broker.url,
      MULTIAGENTS_PREFIX: PREFIX,
      MULTIAGENTS_WORKER_MODULES: join(REPO_ROOT, 'tests/fault/dist/agent-workers.js'),
      MULTIAGENTS_VISIBILITY_TIMEOUT_MS: '1000',
      AGENT_LLM_URL: llm.url,
      AGENT_LLM_KEY: API_KEY,
      LOG_LEVEL: 'warn',
    };
    const victim = new ServiceProcess(
      'agent-victim',
      join(REPO_ROOT, 'apps/worker-manager/dist/main.js'),
      { ...env, AGENT_CRASH_AFTER_MEMO: '1' },
      logDir,
      await freePort(),
    );
    services.push(victim);
    await victim.start();
    await backend.bus.publish(Topics.command(AGENT), [command()]);

    expect(await victim.exited(120_000)).toEqual({ code: null, signal: 'SIGKILL' });
    // The model answered once, the answer is recorded, and no result went out.
    expect(llm.calls).toBe(1);
    expect(results).toEqual([]);
    // Recorded by the product's memo on the service's broker: under the prefix, with a TTL.
    expect(await backend.memo.get('tx-1:answer')).toMatchObject({ answer: { answer: 'Paris' } });

    const survivor = new ServiceProcess(
      'agent-survivor',
      join(REPO_ROOT, 'apps/worker-manager/dist/main.js'),
      env,
      logDir,
      await freePort(),
    );
    services.push(survivor);
    await survivor.start();
    await waitFor(() => results.length > 0, {
      timeoutMs: 120_000,
      description: 'the redelivered command’s result',
    });

    expect(results[0]!.payload).toMatchObject({
      commandId: 'tx-1:answer:1',
      ok: true,
      output: { agent: AGENT, answer: { answer: 'Paris', sources: ['atlas'] }, usage: { modelCalls: 1 } },
    });
    // Zero model calls for the redelivery: one call in all.
    expect(llm.calls).toBe(1);
  },
);
