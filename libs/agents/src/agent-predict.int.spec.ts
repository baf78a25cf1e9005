// Agents against the fake OpenAI-compatible server over real HTTP on loopback.
import { AgentErrorCode } from './agent-errors';
import { MemoryAgentMemo } from './agent-memo';
import type { AgentResult } from './agent-result';
import { defineAgent, type AgentOptions } from './define-agent';
import { TEST_API_KEY, closeTestLlms, startTestLlm, testContext } from './testing/agent-fixture';

afterEach(closeTestLlms);

const SIGNATURE = 'question:string -> answer:string, sources:string[]';

function agent(model: AgentOptions['model'], extra: Partial<AgentOptions> = {}) {
  return defineAgent('qa.answer', { signature: SIGNATURE, model, memo: new MemoryAgentMemo(), ...extra });
}

async function rejection(promise: Promise<unknown>): Promise<Record<string, unknown> & Error> {
  try {
    await promise;
  } catch (err) {
    return err as Record<string, unknown> & Error;
  }
  throw new Error('expected the attempt to fail');
}

describe('a predict agent', () => {
  it('sends the signature’s fields to the model and parses its answer into the output fields', async () => {
    const { server, model } = await startTestLlm([
      { match: 'Capital of France', fields: { answer: 'Paris', sources: ['atlas-7', 'wiki-3'] } },
    ]);
    const result = await agent(model, { description: 'Answer geography questions.' }).handler(
      { question: 'Capital of France?', unrelated: 'context key' },
      testContext(),
    );

    expect(result).toMatchObject({
      agent: 'qa.answer',
      answer: { answer: 'Paris', sources: ['atlas-7', 'wiki-3'] },
      toolCalls: [],
      model: 'fake-model',
      truncated: false,
    });
    expect(server.calls).toBe(1);
    const [request] = server.requests;
    expect(request).toMatchObject({ model: 'fake-model', stream: true, authorized: true });
    expect(request!.lastUserMessage).toContain('Capital of France?');
    expect(request!.lastUserMessage).not.toContain('context key');
    // Ax describes the fields (title and wire key) and the task in the system prompt.
    expect(request!.systemMessage).toContain('Answer geography questions.');
    expect(request!.systemMessage).toMatch(/Answer \(wire key: `answer`\)/);
    expect(request!.systemMessage).toMatch(/Sources \(wire key: `sources`\)/);
  });

  it('records usage from the provider and prices it from the table', async () => {
    const { model } = await startTestLlm([
      { fields: { answer: 'Paris', sources: [] }, usage: { promptTokens: 1_200, completionTokens: 300 } },
    ]);
    const result = await agent(model, {
      prices: { 'fake-model': { inputUsdPerMTok: 2.5, outputUsdPerMTok: 10 } },
    }).handler({ question: 'Capital?' }, testContext());
    expect(result.usage.promptTokens).toBe(1_200);
    expect(result.usage.completionTokens).toBe(300);
    expect(result.usage.totalTokens).toBe(1_500);
    expect(result.usage.modelCalls).toBe(1);
    expect(result.usage.costUsd).toBeCloseTo(0.006, 12);
  });

  it('says the cost is unknown (null) for a model without a price', async () => {
    const { model } = await startTestLlm([{ fields: { answer: 'Paris', sources: [] } }]);
    const result = await agent(model, {
      prices: { 'other-model': { inputUsdPerMTok: 1, outputUsdPerMTok: 1 } },
    }).handler({ question: 'Capital?' }, testContext());
    expect(result.usage.costUsd).toBeNull();
    expect(result.usage.totalTokens).toBeGreaterThan(0);
  });

  it('streams the answer’s text deltas to ctx.progress, in order', async () => {
    const answer = 'Paris has been the capital of France since the late tenth century.';
    const { model } = await startTestLlm([{ fields: { answer, sources: ['history'] }, chunkChars: 5 }]);
    const ctx = testContext();
    const result = await agent(model).handler({ question: 'Capital?' }, ctx);

    const deltas = ctx.progressReports.map((r) => r.deltas?.['answer'] ?? '');
    expect(deltas.filter((d) => d !== '').length).toBeGreaterThan(5);
    expect(deltas.join('')).toBe(answer);
    expect(result.answer.answer).toBe(answer);
  });

  it('works without streaming too (no progress then)', async () => {
    const { server, model } = await startTestLlm([{ fields: { answer: 'Paris', sources: ['a'] } }]);
    const ctx = testContext();
    const result = await agent(model, { stream: false }).handler({ question: 'Capital?' }, ctx);
    expect(result.answer).toEqual({ answer: 'Paris', sources: ['a'] });
    expect(server.requests[0]!.stream).toBe(false);
    expect(ctx.progressReports).toEqual([]);
    expect(result.usage.modelCalls).toBe(1);
  });

  it('hands prompt text from run inputs to the model as data, never evaluating it', async () => {
    const hostile =
      '${globalThis.__agentPwned = 1} {{constructor.constructor("globalThis.__agentPwned = 2")()}} `); globalThis.__agentPwned = 3; (`';
    const { server, model } = await startTestLlm([{ fields: { answer: 'no', sources: [] } }]);
    await agent(model).handler({ question: hostile }, testContext());
    expect((globalThis as { __agentPwned?: unknown }).__agentPwned).toBeUndefined();
    expect(server.requests[0]!.lastUserMessage).toContain(hostile);
  });

  it('fails a step input without the signature’s fields as non-retryable, without calling the model', async () => {
    const { server, model } = await startTestLlm([{ fields: { answer: 'x', sources: [] } }]);
    const error = await rejection(agent(model).handler({ query: 'wrong key' }, testContext()));
    expect(error).toMatchObject({ code: AgentErrorCode.BadInput, retryable: false });
    expect(error.message).toContain('input field "question" is missing');
    expect(server.calls).toBe(0);
  });

  it('sends the key as a bearer token and never shows it in results, errors, logs or the console', async () => {
    const consoleLines: unknown[] = [];
    const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((level) =>
      jest.spyOn(console, level).mockImplementation((...args: unknown[]) => void consoleLines.push(args)),
    );
    try {
      const { server, model } = await startTestLlm([
        { match: 'ok', fields: { answer: 'fine', sources: [] } },
        { match: 'fail', error: { status: 500, message: `upstream echoed ${TEST_API_KEY}` } },
      ]);
      const ctx = testContext();
      const ok: AgentResult = await agent(model).handler({ question: 'ok?' }, ctx);
      const failed = await rejection(agent(model).handler({ question: 'fail?' }, ctx));
      const wrongKey = await rejection(
        agent({ ...model, apiKey: 'sk-wrong-key-000' }).handler({ question: 'ok?' }, ctx),
      );

      expect(server.requests[0]!.authorized).toBe(true);
      expect(wrongKey).toMatchObject({ code: AgentErrorCode.ProviderError, retryable: false });
      const everything = JSON.stringify([
        ok,
        failed,
        failed.message,
        wrongKey,
        wrongKey.message,
        ctx.logger.lines,
      ]);
      expect(everything).not.toContain(TEST_API_KEY);
      expect(JSON.stringify(consoleLines)).not.toContain(TEST_API_KEY);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});

describe('a chain-of-thought agent', () => {
  it('asks for a reasoning field before the answer, records it apart and streams it', async () => {
    const { server, model } = await startTestLlm([
      {
        fields: { reasoning: 'The Seine city hosts the government.', answer: 'Paris', sources: ['gov'] },
      },
    ]);
    const ctx = testContext();
    const result = await agent(model, { reasoning: 'chain-of-thought' }).handler(
      { question: 'Capital?' },
      ctx,
    );

    const system = server.requests[0]!.systemMessage;
    expect(system).toMatch(/Reasoning \(wire key: `reasoning`\)/);
    expect(system.indexOf('wire key: `reasoning`')).toBeLessThan(system.indexOf('wire key: `answer`'));
    expect(result.reasoning).toBe('The Seine city hosts the government.');
    expect(result.answer).toEqual({ answer: 'Paris', sources: ['gov'] });
    expect(ctx.progressReports.map((r) => r.deltas?.['reasoning'] ?? '').join('')).toBe(
      'The Seine city hosts the government.',
    );
  });
});
