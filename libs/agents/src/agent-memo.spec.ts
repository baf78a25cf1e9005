import { MemoryAgentMemo } from './agent-memo';
import type { AgentResult } from './agent-result';

function record(answer: string): AgentResult {
  return {
    agent: 'qa.answer',
    answer: { answer },
    toolCalls: [],
    usage: { promptTokens: 10, completionTokens: 2, totalTokens: 12, costUsd: null, modelCalls: 1 },
    model: 'fake-model',
    truncated: false,
  };
}

describe('MemoryAgentMemo', () => {
  it('returns undefined for a key never put', async () => {
    expect(await new MemoryAgentMemo().get('tx-1:answer')).toBeUndefined();
  });

  it('is put-if-absent: the first record stays, and put returns the stored one', async () => {
    const memo = new MemoryAgentMemo();
    expect(await memo.put('tx-1:answer', record('Paris'))).toEqual(record('Paris'));
    expect(await memo.put('tx-1:answer', record('Lyon'))).toEqual(record('Paris'));
    expect(await memo.get('tx-1:answer')).toEqual(record('Paris'));
    expect(await memo.get('tx-2:answer')).toBeUndefined();
  });

  it('keeps its own copy', async () => {
    const memo = new MemoryAgentMemo();
    const mine = record('Paris');
    await memo.put('k', mine);
    mine.answer['answer'] = 'changed';
    const read = await memo.get('k');
    read!.answer['answer'] = 'changed too';
    expect((await memo.get('k'))?.answer).toEqual({ answer: 'Paris' });
  });

  it('forgets the oldest record past maxEntries', async () => {
    const memo = new MemoryAgentMemo({ maxEntries: 2 });
    await memo.put('a', record('1'));
    await memo.put('b', record('2'));
    await memo.put('c', record('3'));
    expect(memo.size).toBe(2);
    expect(await memo.get('a')).toBeUndefined();
    expect(await memo.get('c')).toEqual(record('3'));
    expect(() => new MemoryAgentMemo({ maxEntries: 0 })).toThrow(RangeError);
  });
});
