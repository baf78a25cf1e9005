// Test helpers shared by this package's specs; the src/testing/ folder is excluded from the build.
import { EventType, type Envelope, type StepCommandPayload } from '@multiagents/contracts';
import type { LogFields, Logger } from '@multiagents/core';
import type { ProgressUpdate, WorkerContext } from '@multiagents/worker-sdk';
import {
  startFakeLlmServer,
  type FakeLlmReply,
  type FakeLlmServer,
} from '../fake-llm-server/fake-llm-server';
import type { LlmConfig } from '../llm-config';

/** The API key every test server expects (and that must never show up in logs or errors). */
export const TEST_API_KEY = 'sk-test-3f9a1c7e5b2d4a68';

/** Fake servers started by {@link startTestLlm}, closed by {@link closeTestLlms}. */
const servers: FakeLlmServer[] = [];

/** Starts a fake server with `script` and returns it with the model settings pointing at it. */
export async function startTestLlm(
  script: readonly FakeLlmReply[],
): Promise<{ server: FakeLlmServer; model: LlmConfig }> {
  const server = await startFakeLlmServer({ script, apiKey: TEST_API_KEY });
  servers.push(server);
  return { server, model: { baseUrl: server.url, apiKey: TEST_API_KEY, model: 'fake-model' } };
}

/** Closes every server {@link startTestLlm} started (call in afterEach). */
export async function closeTestLlms(): Promise<void> {
  await Promise.all(servers.splice(0).map((s) => s.close()));
}

/** One line recorded by {@link recordingLogger}. */
export interface LogLine {
  readonly level: string;
  readonly fields: LogFields;
  readonly message: string;
}

/** A Logger that records every line with the bindings of its child chain merged in. */
export function recordingLogger(
  lines: LogLine[] = [],
  bindings: LogFields = {},
): Logger & { lines: LogLine[] } {
  const log = (level: string) => (fields: LogFields, message: string) =>
    void lines.push({ level, fields: { ...bindings, ...fields }, message });
  return {
    lines,
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (more) => recordingLogger(lines, { ...bindings, ...more }),
  };
}

/** A worker context for calling an agent's handler directly, recording its progress reports. */
export function testContext(
  overrides: Partial<WorkerContext> = {},
): WorkerContext & { progressReports: ProgressUpdate[]; logger: Logger & { lines: LogLine[] } } {
  const progressReports: ProgressUpdate[] = [];
  const logger = recordingLogger();
  return {
    txId: 'tx-1',
    workflowId: 'research',
    step: 'answer',
    attempt: 1,
    idempotencyKey: 'tx-1:answer',
    compensation: false,
    signal: new AbortController().signal,
    heartbeat: async () => undefined,
    progress: (update) => void progressReports.push(update),
    logger,
    progressReports,
    ...overrides,
  } as WorkerContext & { progressReports: ProgressUpdate[]; logger: Logger & { lines: LogLine[] } };
}

/** A `step.command` envelope for `worker`, as an orchestrator would publish it. */
export function agentCommand(
  worker: string,
  input: unknown,
  options: { attempt?: number; txId?: string; step?: string } = {},
): Envelope<StepCommandPayload> {
  const txId = options.txId ?? 'tx-1';
  const step = options.step ?? 'answer';
  const attempt = options.attempt ?? 1;
  const commandId = `${txId}:${step}:${attempt}`;
  return {
    id: `${commandId}:command`,
    type: EventType.StepCommand,
    txId,
    workflowId: 'research',
    step,
    attempt,
    time: Date.now(),
    headers: {},
    payload: { commandId, worker, input, idempotencyKey: `${txId}:${step}`, compensation: false },
  };
}
