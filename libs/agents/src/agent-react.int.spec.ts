import { trace } from '@opentelemetry/api';
// React agents (tools in a loop) against the fake OpenAI-compatible server over loopback HTTP.
import { ErrorCode, MAX_ENVELOPE_BYTES } from '@multiagents/contracts';
import { ManualClock } from '@multiagents/testing';
import { AgentErrorCode } from './agent-errors';
import { MemoryAgentMemo } from './agent-memo';
import { defineTool, type AgentTool } from './agent-tool';
import { defineAgent, type AgentOptions } from './define-agent';
import type { FakeLlmRequest } from './fake-llm-server/fake-llm-server';
import { closeTestLlms, startTestLlm, testContext } from './testing/agent-fixture';
import { RecordingTracer } from './testing/recording-tracer';

afterEach(closeTestLlms);

const CORPUS: Record<string, string> = {
  'doc-1': 'Paris is the capital and largest city of France.',
  'doc-2': 'Lyon is known for its cuisine.',
};

const clock = new ManualClock();

function searchTool(onCall?: (query: string) => void): AgentTool<never, unknown> {
  return defineTool<{ query: string }, { hits: { id: string; text: string }[] }>({
    name: 'search_corpus',
    description: 'Full-text search over the bundled corpus',
    parameters: {
      type: 'object',
      properties: { query: { type: 'string', description: 'words to look for' } },
      required: ['query'],
    },
    handler: ({ query }) => {
      onCall?.(query);
      clock.advance(7);
      const words = query.toLowerCase().split(/\s+/);
      return {
        hits: Object.entries(CORPUS)
          .filter(([, text]) => words.some((w) => text.toLowerCase().includes(w)))
          .map(([id, text]) => ({ id, text })),
      };
    },
  });
}

const noToolResultYet = (r: FakeLlmRequest): boolean => r.toolResults.length === 0;
const afterToolResult = (r: FakeLlmRequest): boolean => r.toolResults.length > 0;

function agent(
  model: AgentOptions['model'],
  tools: readonly AgentTool<never, unknown>[],
  extra: Partial<AgentOptions> = {},
) {
  return defineAgent('research.answer', {
    signature: 'question:string -> answer:string, sources:string[]',
    reasoning: 'react',
    tools,
    model,
    memo: new MemoryAgentMemo(),
    clock,
    ...extra,
  });
}

async function rejection(promise: Promise<unknown>): Promise<Record<string, unknown> & Error> {
  try {
    await promise;
  } catch (err) {
    return err as Record<string, unknown> & Error;
  }
  throw new Error('expected the attempt to fail');
}

describe('a react agent', () => {
  it('calls its tools in a loop, gives their results to the model, and records every call', async () => {
    const queries: string[] = [];
    const { server, model } = await startTestLlm([
      {
        match: noToolResultYet,
        toolCalls: [{ name: 'search_corpus', arguments: { query: 'capital France' } }],
      },
      { match: afterToolResult, fields: { answer: 'Paris', sources: ['doc-1'] } },
    ]);
    const ctx = testContext();
    const result = await agent(model, [searchTool((q) => queries.push(q))]).handler(
      { question: 'What is the capital of France?' },
      ctx,
    );

    expect(queries).toEqual(['capital France']);
    expect(server.calls).toBe(2);
    expect(server.requests[0]!.tools).toEqual(['search_corpus']);
    // The tool's result went back to the model as a tool message.
    expect(JSON.parse(server.requests[1]!.toolResults[0]!)).toEqual({
      hits: [{ id: 'doc-1', text: CORPUS['doc-1'] }],
    });
    expect(result.answer).toEqual({ answer: 'Paris', sources: ['doc-1'] });
    expect(result.toolCalls).toEqual([
      {
        name: 'search_corpus',
        arguments: { query: 'capital France' },
        ok: true,
        result: { hits: [{ id: 'doc-1', text: CORPUS['doc-1'] }] },
        durationMs: 7,
      },
    ]);
    expect(result.usage.modelCalls).toBe(2);
    expect(ctx.progressReports).toContainEqual({ status: { tool: 'search_corpus', ok: true } });
  });

  it('runs several tool calls of one response, records them in call order with their call index', async () => {
    const seen: { tool: string; callIndex: number }[] = [];
    const fetchDocument = defineTool<{ id: string }>({
      name: 'fetch_document',
      description: 'Reads one document of the corpus',
      parameters: {
        type: 'object',
        properties: { id: { type: 'string', description: 'document id' } },
        required: ['id'],
      },
      handler: ({ id }, ctx) => {
        seen.push({ tool: 'fetch_document', callIndex: ctx.callIndex });
        return { id, text: CORPUS[id] ?? null };
      },
    });
    const { server, model } = await startTestLlm([
      {
        match: noToolResultYet,
        toolCalls: [
          { name: 'fetch_document', arguments: { id: 'doc-1' } },
          { name: 'fetch_document', arguments: { id: 'doc-2' } },
        ],
      },
      { match: afterToolResult, fields: { answer: 'Paris', sources: ['doc-1'] } },
    ]);
    const result = await agent(model, [searchTool(), fetchDocument]).handler(
      { question: 'Capital?' },
      testContext(),
    );

    expect(server.requests[1]!.toolResults.map((r) => JSON.parse(r) as unknown)).toEqual([
      { id: 'doc-1', text: CORPUS['doc-1'] },
      { id: 'doc-2', text: CORPUS['doc-2'] },
    ]);
    expect(seen.map((s) => s.callIndex).sort()).toEqual([0, 1]);
    expect(result.toolCalls.map((c) => [c.name, c.arguments])).toEqual([
      ['fetch_document', { id: 'doc-1' }],
      ['fetch_document', { id: 'doc-2' }],
    ]);
  });

  it("keeps its result within a worker's output: the oldest tool calls lose their recorded data first", async () => {
    const bigTool = defineTool<{ id: string }>({
      name: 'fetch_big',
      description: 'Reads a large document',
      parameters: {
        type: 'object',
        properties: { id: { type: 'string', description: 'document id' } },
        required: ['id'],
      },
      handler: ({ id }) => ({ id, text: 'x'.repeat(16 * 1024) }),
    });
    // 40 calls of 16 KiB each: 640 KiB of records, past the 512 KiB a step's output may hold.
    const calls = Array.from({ length: 40 }, (_, i) => ({ name: 'fetch_big', arguments: { id: `d${i}` } }));
    const { model } = await startTestLlm([
      { match: noToolResultYet, toolCalls: calls },
      { match: afterToolResult, fields: { answer: 'done', sources: [] } },
    ]);
    const ctx = testContext();
    const result = await agent(model, [bigTool]).handler({ question: 'Read them all' }, ctx);

    expect(Buffer.byteLength(JSON.stringify(result))).toBeLessThanOrEqual(MAX_ENVELOPE_BYTES / 2);
    expect(result.toolCalls).toHaveLength(40);
    const slim = result.toolCalls.filter((c) => c.argumentsDropped === true);
    expect(slim.length).toBeGreaterThan(0);
    // The oldest went first, each marked; the newest keep what they returned.
    expect(result.toolCalls.slice(0, slim.length)).toEqual(slim);
    expect(slim[0]).toMatchObject({ name: 'fetch_big', ok: true, arguments: null, resultTruncated: true });
    expect(result.toolCalls.at(-1)).toMatchObject({ arguments: { id: 'd39' }, result: { id: 'd39' } });
    expect(ctx.logger.lines.map((l) => l.message)).toContain(
      'tool call results and arguments dropped from the agent result to fit its size limit',
    );
  });

  it('reports a tool that throws to the model as an error result, and goes on', async () => {
    const failing = defineTool({
      name: 'search_corpus',
      description: 'Search',
      parameters: { type: 'object', properties: { query: { type: 'string', description: 'words' } } },
      handler: () => {
        throw new Error('index is rebuilding');
      },
    });
    const { server, model } = await startTestLlm([
      { match: noToolResultYet, toolCalls: [{ name: 'search_corpus', arguments: { query: 'capital' } }] },
      { match: afterToolResult, fields: { answer: 'I could not search; Paris, from memory.', sources: [] } },
    ]);
    const result = await agent(model, [failing]).handler({ question: 'Capital of France?' }, testContext());

    expect(JSON.parse(server.requests[1]!.toolResults[0]!)).toEqual({ error: 'index is rebuilding' });
    expect(result.toolCalls).toEqual([
      expect.objectContaining({
        name: 'search_corpus',
        ok: false,
        error: { message: 'index is rebuilding' },
      }),
    ]);
    expect(result.answer['answer']).toContain('Paris');
  });

  it('answers arguments that do not fit the tool’s schema with an error result, without running the tool', async () => {
    const queries: string[] = [];
    const { server, model } = await startTestLlm([
      { match: noToolResultYet, toolCalls: [{ name: 'search_corpus', arguments: { q: 5 } }] },
      { match: afterToolResult, fields: { answer: 'Paris', sources: [] } },
    ]);
    const result = await agent(model, [searchTool((q) => queries.push(q))]).handler(
      { question: 'Capital?' },
      testContext(),
    );
    expect(queries).toEqual([]);
    expect(JSON.parse(server.requests[1]!.toolResults[0]!)).toEqual({
      error: 'invalid arguments: "query" is required',
    });
    expect(result.toolCalls[0]).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENTS' } });
  });

  it('fails with AGENT_STEP_LIMIT (not retryable) when the loop uses its step cap', async () => {
    const { server, model } = await startTestLlm([
      { toolCalls: [{ name: 'search_corpus', arguments: { query: 'again' } }] },
    ]);
    const error = await rejection(
      agent(model, [searchTool()], { maxSteps: 3 }).handler({ question: 'Loop?' }, testContext()),
    );
    expect(error).toMatchObject({ code: AgentErrorCode.StepLimit, retryable: false });
    expect(server.calls).toBe(3);
    expect((error['details'] as { usage: { modelCalls: number } }).usage.modelCalls).toBe(3);
  });

  it('stops calling the model once its own budget is used up (BUDGET_EXCEEDED, not retryable)', async () => {
    const { server, model } = await startTestLlm([
      {
        toolCalls: [{ name: 'search_corpus', arguments: { query: 'again' } }],
        usage: { promptTokens: 400, completionTokens: 100 },
      },
    ]);
    const error = await rejection(
      agent(model, [searchTool()], { maxSteps: 10, budget: { maxTokens: 1_000 } }).handler(
        { question: 'Loop?' },
        testContext(),
      ),
    );
    expect(error).toMatchObject({ code: ErrorCode.BudgetExceeded, retryable: false });
    // 500 tokens a call: the third call would start with 1 000 used.
    expect(server.calls).toBe(2);
    expect((error['details'] as { usage: { totalTokens: number } }).usage.totalTokens).toBe(1_000);
  });

  it('treats tool-call arguments that are not JSON as a malformed answer (retryable)', async () => {
    const { model } = await startTestLlm([
      { toolCalls: [{ name: 'search_corpus', arguments: '{"query": ' }] },
    ]);
    const error = await rejection(agent(model, [searchTool()]).handler({ question: 'Q?' }, testContext()));
    expect(error).toMatchObject({ code: AgentErrorCode.BadAnswer, retryable: true });
  });
});

describe('a react agent with a tracer', () => {
  it('makes a gen_ai span of every model call and an execute_tool span of every tool call', async () => {
    const tracer = new RecordingTracer();
    const { model } = await startTestLlm([
      {
        match: noToolResultYet,
        toolCalls: [
          { name: 'search_corpus', arguments: { query: 'capital France' } },
          { name: 'search_corpus', arguments: { wrong: 1 } },
        ],
      },
      { match: afterToolResult, fields: { answer: 'Paris', sources: ['doc-1'] } },
    ]);
    // The attempt's span, as the worker's tracing hands it over: every agent span is its child.
    const attemptSpan = { traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8) };
    await agent(model, [searchTool()], { tracer }).handler(
      { question: 'Capital of France?' },
      testContext({ traceHeaders: { traceparent: `00-${attemptSpan.traceId}-${attemptSpan.spanId}-01` } }),
    );
    // Ax's program span and the tool spans are children of the attempt; the model calls nest under
    // Ax's span; nothing starts a trace of its own.
    const underAttempt = tracer.spans
      .filter((s) => s.parent?.spanId === attemptSpan.spanId)
      .map((s) => s.name);
    expect(underAttempt).toEqual(['AxGen', 'execute_tool search_corpus', 'execute_tool search_corpus']);
    expect(tracer.spans.every((s) => s.parent?.traceId === attemptSpan.traceId)).toBe(true);

    const modelSpans = tracer.spans.filter((s) => s.attributes['gen_ai.request.model'] !== undefined);
    expect(modelSpans).toHaveLength(2);
    for (const span of modelSpans) {
      expect(span.attributes).toMatchObject({ 'gen_ai.request.model': 'fake-model' });
      expect(span.ended).toBe(true);
    }
    const toolSpans = tracer.spans.filter((s) => s.name === 'execute_tool search_corpus');
    expect(
      toolSpans.map((s) => [
        s.attributes['gen_ai.operation.name'],
        s.attributes['gen_ai.tool.name'],
        s.ended,
      ]),
    ).toEqual([
      ['execute_tool', 'search_corpus', true],
      ['execute_tool', 'search_corpus', true],
    ]);
    // The call with arguments that do not fit the schema is marked as an error.
    expect(toolSpans.map((s) => s.status?.code ?? 0)).toEqual([0, 2]);
  });
  it("uses the process's global tracer when none is given (the services register theirs)", async () => {
    const recording = new RecordingTracer();
    trace.setGlobalTracerProvider({ getTracer: () => recording });
    try {
      const { model } = await startTestLlm([
        { match: noToolResultYet, toolCalls: [{ name: 'search_corpus', arguments: { query: 'France' } }] },
        { match: afterToolResult, fields: { answer: 'Paris', sources: ['doc-1'] } },
      ]);
      await agent(model, [searchTool()]).handler(
        { question: 'Capital of France?' },
        testContext({ traceHeaders: { traceparent: `00-${'ef'.repeat(16)}-${'12'.repeat(8)}-01` } }),
      );
      expect(recording.spans.map((s) => s.name)).toEqual(
        expect.arrayContaining(['AxGen', 'execute_tool search_corpus']),
      );
    } finally {
      trace.disable();
    }
  });
});
