// Paid once: the memo keyed by the step's idempotency key, against the fake server over loopback.
import { MemoRecordCorruptError, type MemoStore } from '@multiagents/core';
import { createMemoryBackend } from '@multiagents/memory';
import { AgentErrorCode } from './agent-errors';
import { MemoryAgentMemo, type AgentMemo } from './agent-memo';
import type { AgentResult } from './agent-result';
import { defineAgent, type AgentOptions } from './define-agent';
import { closeTestLlms, startTestLlm, testContext } from './testing/agent-fixture';

afterEach(closeTestLlms);

function agent(model: AgentOptions['model'], memo: AgentMemo) {
  return defineAgent('qa.answer', { signature: 'question:string -> answer:string', model, memo });
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code: string; retryable: boolean }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { code: string; retryable: boolean };
  }
  throw new Error('expected the attempt to fail');
}

describe('the agent memo', () => {
  it('records the answer under the idempotency key; an attempt again for that key calls the model zero times', async () => {
    const { server, model } = await startTestLlm([
      { times: 1, fields: { answer: 'Paris' } },
      { fields: { answer: 'a second, different, paid answer' } },
    ]);
    const memo = new MemoryAgentMemo();
    const first = await agent(model, memo).handler({ question: 'Capital?' }, testContext({ attempt: 1 }));
    expect(server.calls).toBe(1);
    expect(await memo.get('tx-1:answer')).toEqual(first);

    // A redelivery, or a retry after the result was lost: same key, another attempt.
    const ctx = testContext({ attempt: 2 });
    const again = await agent(model, memo).handler({ question: 'Capital?' }, ctx);
    expect(server.calls).toBe(1);
    expect(again).toEqual(first);
    expect(ctx.logger.lines).toContainEqual(
      expect.objectContaining({
        message: 'agent answer replayed from its memo; the model is not called again',
        fields: expect.objectContaining({ idempotencyKey: 'tx-1:answer', modelCalls: 0 }),
      }),
    );

    // Another step (another key) is another question.
    await agent(model, memo).handler(
      { question: 'Capital?' },
      testContext({ idempotencyKey: 'tx-2:answer' }),
    );
    expect(server.calls).toBe(2);
  });

  it('lets the first of two racing attempts win: both return the recorded answer', async () => {
    const { server, model } = await startTestLlm([
      { match: 'one', fields: { answer: 'first' } },
      { match: 'two', fields: { answer: 'second' } },
    ]);
    const memo = new MemoryAgentMemo();
    const a = agent(model, memo);
    const results = await Promise.all([
      a.handler({ question: 'one' }, testContext()),
      a.handler({ question: 'two' }, testContext()),
    ]);
    expect(server.calls).toBe(2);
    expect(results[0]).toEqual(results[1]);
    expect(await memo.get('tx-1:answer')).toEqual(results[0]);
  });

  it('fails the attempt retryably, without calling the model, when the memo cannot be read', async () => {
    const { server, model } = await startTestLlm([{ fields: { answer: 'Paris' } }]);
    const broken: AgentMemo = {
      get: () => Promise.reject(new Error('redis: connection refused')),
      put: (_key, record) => Promise.resolve(record),
    };
    const error = await rejection(agent(model, broken).handler({ question: 'Q?' }, testContext()));
    expect(error).toMatchObject({ code: AgentErrorCode.MemoUnavailable, retryable: true });
    expect(server.calls).toBe(0);
  });

  it('returns the paid answer when it cannot be recorded, and says so', async () => {
    const { model } = await startTestLlm([{ fields: { answer: 'Paris' } }]);
    const readOnly: AgentMemo = {
      get: () => Promise.resolve(undefined),
      put: () => Promise.reject(new Error('redis: READONLY')),
    };
    const ctx = testContext();
    const result = await agent(model, readOnly).handler({ question: 'Q?' }, ctx);
    expect(result.answer).toEqual({ answer: 'Paris' });
    expect(ctx.logger.lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        message:
          'agent answer not recorded in its memo; a redelivery of this command would call the model again',
      }),
    );
  });

  it('refuses a record that is not an agent result (non-retryable), without calling the model', async () => {
    const { server, model } = await startTestLlm([{ fields: { answer: 'Paris' } }]);
    const corrupt: AgentMemo = {
      get: () => Promise.resolve({ nonsense: true } as unknown as AgentResult),
      put: (_key, record) => Promise.resolve(record),
    };
    const error = await rejection(agent(model, corrupt).handler({ question: 'Q?' }, testContext()));
    expect(error).toMatchObject({ code: AgentErrorCode.MemoCorrupt, retryable: false });
    expect(server.calls).toBe(0);
  });

  it("takes a backend's memo (a MemoStore) as it is: the answer recorded there, replayed from there", async () => {
    const { server, model } = await startTestLlm([{ fields: { answer: 'Paris' } }]);
    const backend = createMemoryBackend();
    const memo: MemoStore = backend.memo;
    const first = await agent(model, memo).handler({ question: 'Capital?' }, testContext({ attempt: 1 }));
    const again = await agent(model, memo).handler({ question: 'Capital?' }, testContext({ attempt: 2 }));
    expect(again).toEqual(first);
    expect(await backend.memo.get('tx-1:answer')).toEqual(first);
    expect(server.calls).toBe(1);
    await backend.close();
  });

  it('fails the attempt retryably, without calling the model, when the stored record is not JSON', async () => {
    const { server, model } = await startTestLlm([{ fields: { answer: 'Paris' } }]);
    const corrupted: MemoStore = {
      get: (key) => Promise.reject(new MemoRecordCorruptError(key, 'Redis memo', new SyntaxError('bad'))),
      put: (_key, record) => Promise.resolve(record),
    };
    const error = await rejection(agent(model, corrupted).handler({ question: 'Q?' }, testContext()));
    expect(error).toMatchObject({ code: AgentErrorCode.MemoUnavailable, retryable: true });
    expect(server.calls).toBe(0);
  });
});
