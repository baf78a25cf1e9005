// Bad answers, provider errors, hangs and oversized answers, against the fake server over loopback.
import { waitFor } from '@multiagents/testing';
import { AgentErrorCode } from './agent-errors';
import { MemoryAgentMemo } from './agent-memo';
import { defineAgent, type AgentOptions } from './define-agent';
import { closeTestLlms, startTestLlm, testContext } from './testing/agent-fixture';

afterEach(closeTestLlms);

function agent(model: AgentOptions['model'], extra: Partial<AgentOptions> = {}) {
  return defineAgent('qa.answer', {
    signature: 'question:string -> answer:string, confidence:number, verdict:class "supported, unsupported"',
    model,
    memo: new MemoryAgentMemo(),
    ...extra,
  });
}

type Failure = Error & { code: string; retryable: boolean; details: Record<string, unknown> };

async function rejection(promise: Promise<unknown>): Promise<Failure> {
  try {
    await promise;
  } catch (err) {
    return err as Failure;
  }
  throw new Error('expected the attempt to fail');
}

describe('a malformed answer', () => {
  it.each([
    ['a missing field', 'answer: Paris\nverdict: supported', /confidence/i],
    ['a number that is not one', 'answer: Paris\nconfidence: very high\nverdict: supported', /Confidence/],
    ['a class value not offered', 'answer: Paris\nconfidence: 0.9\nverdict: maybe', /verdict|Verdict/],
    ['an empty completion', '', /answer|Answer/],
  ])('(%s) is a retryable AGENT_BAD_ANSWER with the raw answer kept', async (_what, text, problem) => {
    const { server, model } = await startTestLlm([{ text }]);
    const error = await rejection(agent(model).handler({ question: 'Capital?' }, testContext()));
    expect(error).toMatchObject({ code: AgentErrorCode.BadAnswer, retryable: true });
    expect(error.details['raw']).toBe(text);
    expect((error.details['problems'] as string[]).join()).toMatch(problem);
    expect(error.details['usage']).toMatchObject({ modelCalls: 1 });
    expect(server.calls).toBe(1);
  });

  it('is the same without streaming', async () => {
    const { model } = await startTestLlm([{ text: 'answer: Paris\nconfidence: high\nverdict: supported' }]);
    const error = await rejection(
      agent(model, { stream: false }).handler({ question: 'Capital?' }, testContext()),
    );
    expect(error).toMatchObject({ code: AgentErrorCode.BadAnswer, retryable: true });
    expect(error.details['raw']).toBe('answer: Paris\nconfidence: high\nverdict: supported');
  });

  it('may be corrected inside the attempt when maxCorrections allows it', async () => {
    const { server, model } = await startTestLlm([
      { times: 1, text: 'answer: Paris' },
      { fields: { answer: 'Paris', confidence: 0.8, verdict: 'supported' } },
    ]);
    const ctx = testContext();
    const result = await agent(model, { maxCorrections: 1 }).handler({ question: 'Capital?' }, ctx);
    expect(result.answer).toEqual({ answer: 'Paris', confidence: 0.8, verdict: 'supported' });
    expect(server.calls).toBe(2);
    expect(result.usage.modelCalls).toBe(2);
    // Watchers learn that the streamed text started over.
    expect(ctx.progressReports).toContainEqual({ status: { restarted: true } });
  });

  it('keeps only maxAnswerBytes of a huge raw answer for the operator', async () => {
    const text = `answer: ${'blah '.repeat(20_000)}`;
    const { model } = await startTestLlm([{ text, chunkChars: 4_096 }]);
    const error = await rejection(
      agent(model, { maxAnswerBytes: 1_024 }).handler({ question: 'Q?' }, testContext()),
    );
    expect(error.code).toBe(AgentErrorCode.BadAnswer);
    expect((error.details['raw'] as string).length).toBe(1_024);
  });
});

describe('a provider that fails', () => {
  it.each([
    [500, true],
    [503, true],
    [429, true],
    [400, false],
    [404, false],
  ])('answering HTTP %i is an AGENT_PROVIDER_ERROR, retryable: %s', async (status, retryable) => {
    const { server, model } = await startTestLlm([{ error: { status } }]);
    const error = await rejection(agent(model).handler({ question: 'Q?' }, testContext()));
    expect(error).toMatchObject({ code: AgentErrorCode.ProviderError, retryable, details: { status } });
    // No hidden retries inside the attempt: the step's retry policy decides.
    expect(server.calls).toBe(1);
  });

  it('retries 429 and 5xx inside the attempt only when providerRetries says so', async () => {
    const { server, model } = await startTestLlm([
      { times: 1, error: { status: 503 } },
      { fields: { answer: 'Paris', confidence: 1, verdict: 'supported' } },
    ]);
    const result = await agent(model, { providerRetries: 1 }).handler({ question: 'Q?' }, testContext());
    expect(result.answer['answer']).toBe('Paris');
    expect(server.calls).toBe(2);
  });

  it('that hangs before answering is abandoned when the attempt’s signal fires', async () => {
    const { server, model } = await startTestLlm([{ hang: 'before-response' }]);
    const controller = new AbortController();
    const attempt = agent(model).handler({ question: 'Q?' }, testContext({ signal: controller.signal }));
    await waitFor(() => server.calls === 1, { description: 'the model call' });
    controller.abort(new Error('step timeout'));
    const error = await rejection(attempt);
    expect(error.message).toBe('step timeout');
    await waitFor(() => server.abandoned === 1, { description: 'the connection closed by the client' });
  });

  it('that hangs in the middle of a stream is abandoned too, after the first deltas went out', async () => {
    const { server, model } = await startTestLlm([
      { hang: 'mid-stream', fields: { answer: 'Paris is the capital', confidence: 1, verdict: 'supported' } },
    ]);
    const controller = new AbortController();
    const ctx = testContext({ signal: controller.signal });
    const attempt = agent(model).handler({ question: 'Q?' }, ctx);
    await waitFor(() => server.calls === 1, { description: 'the model call' });
    controller.abort(new Error('step timeout'));
    expect((await rejection(attempt)).message).toBe('step timeout');
    await waitFor(() => server.abandoned === 1, { description: 'the connection closed by the client' });
  });

  it('that hangs past requestTimeoutMs is a retryable AGENT_PROVIDER_ERROR', async () => {
    const { server, model } = await startTestLlm([{ hang: 'before-response' }]);
    const error = await rejection(
      agent(model, { requestTimeoutMs: 200 }).handler({ question: 'Q?' }, testContext()),
    );
    expect(error).toMatchObject({
      code: AgentErrorCode.ProviderError,
      retryable: true,
      details: { kind: 'AxAIServiceTimeoutError' },
    });
    await waitFor(() => server.abandoned === 1, { description: 'the connection closed by the client' });
  });

  it('that stops in the middle of a stream past requestTimeoutMs is a retryable AGENT_PROVIDER_ERROR', async () => {
    // Headers and the first deltas come at once: the library's own timeout has stopped by then.
    const { server, model } = await startTestLlm([
      { hang: 'mid-stream', fields: { answer: 'Paris is the capital', confidence: 1, verdict: 'supported' } },
    ]);
    const error = await rejection(
      agent(model, { requestTimeoutMs: 300 }).handler({ question: 'Q?' }, testContext()),
    );
    expect(error).toMatchObject({
      code: AgentErrorCode.ProviderError,
      retryable: true,
      details: { kind: 'timeout', timeoutMs: 300 },
    });
    await waitFor(() => server.abandoned === 1, { description: 'the connection closed by the client' });
  });

  it('that is unreachable is a retryable AGENT_PROVIDER_ERROR', async () => {
    const { server, model } = await startTestLlm([]);
    await server.close();
    const error = await rejection(agent(model).handler({ question: 'Q?' }, testContext()));
    expect(error).toMatchObject({
      code: AgentErrorCode.ProviderError,
      retryable: true,
      details: { kind: 'network', reason: 'ECONNREFUSED' },
    });
  });
});

describe('an oversized answer', () => {
  it('is cut to maxAnswerBytes and marked truncated', async () => {
    const long = 'Paris '.repeat(5_000);
    const { model } = await startTestLlm([
      { fields: { answer: long, confidence: 0.5, verdict: 'supported' }, chunkChars: 2_048 },
    ]);
    const ctx = testContext();
    const result = await agent(model, { maxAnswerBytes: 2_048 }).handler({ question: 'Q?' }, ctx);
    expect(result.truncated).toBe(true);
    expect(result.truncatedFields).toEqual(['answer']);
    expect(Buffer.byteLength(JSON.stringify(result.answer))).toBeLessThanOrEqual(2_048);
    expect(long.startsWith(result.answer['answer'] as string)).toBe(true);
    expect(result.answer).toMatchObject({ confidence: 0.5, verdict: 'supported' });
    expect(ctx.logger.lines.map((l) => l.message)).toContain('agent answer truncated to its size limit');
  });

  it('is not marked when it fits', async () => {
    const { model } = await startTestLlm([
      { fields: { answer: 'Paris', confidence: 0.5, verdict: 'supported' } },
    ]);
    const result = await agent(model).handler({ question: 'Q?' }, testContext());
    expect(result.truncated).toBe(false);
    expect(result.truncatedFields).toBeUndefined();
  });
});
