import { ValidationError } from '@multiagents/contracts';
import { MemoryAgentMemo } from './agent-memo';
import { defineTool } from './agent-tool';
import { defineAgent, type AgentOptions } from './define-agent';

const model = { baseUrl: 'http://127.0.0.1:9/v1', apiKey: 'sk-never-shown-1234', model: 'fake-model' };
const search = defineTool<{ query: string }>({
  name: 'search_corpus',
  description: 'Search the corpus',
  parameters: {
    type: 'object',
    properties: { query: { type: 'string', description: 'words' } },
    required: ['query'],
  },
  handler: () => ({ hits: [] }),
});

function problems(name: string, options: Partial<AgentOptions> & Record<string, unknown>): readonly string[] {
  try {
    defineAgent(name, options as AgentOptions);
  } catch (err) {
    if (err instanceof ValidationError) return err.problems;
    throw err;
  }
  throw new Error('expected a ValidationError');
}

describe('defineAgent', () => {
  it('returns a worker definition a WorkerManager hosts, with what the agent is', () => {
    const agent = defineAgent('research.answer', {
      signature: 'question:string -> answer:string, sources:string[]',
      reasoning: 'react',
      tools: [search],
      model,
      memo: new MemoryAgentMemo(),
      worker: { concurrency: 2, timeoutMs: 30_000 },
    });
    expect(agent.name).toBe('research.answer');
    expect(typeof agent.handler).toBe('function');
    expect(agent.options).toMatchObject({ concurrency: 2, timeoutMs: 30_000 });
    expect(agent.agent).toEqual({
      signature: expect.objectContaining({
        inputs: [{ name: 'question', type: 'string', isArray: false, isOptional: false }],
        outputs: [
          { name: 'answer', type: 'string', isArray: false, isOptional: false },
          { name: 'sources', type: 'string', isArray: true, isOptional: false },
        ],
      }),
      reasoning: 'react',
      tools: ['search_corpus'],
      model: 'fake-model',
    });
    expect(JSON.stringify(agent)).not.toContain(model.apiKey);
  });

  it('lists every problem at once, and never echoes the key', () => {
    const found = problems('bad name!', {
      signature: 'text:string -> answer:string',
      reasoning: 'tree-of-thought' as never,
      tools: [search, search],
      model: { baseUrl: 'localhost', apiKey: '', model: '' },
      memo: {} as never,
      budget: { maxTokens: 0 },
      prices: { m: { inputUsdPerMTok: -1, outputUsdPerMTok: 1 } },
      maxAnswerBytes: 10,
      temperature: 3,
      colour: 'blue',
    });
    expect(found).toEqual([
      'unknown option "colour"',
      expect.stringContaining('too generic'),
      'reasoning must be one of predict, chain-of-thought, react',
      'tool "search_corpus" is listed twice',
      'tools are called only with reasoning "react" (got "tree-of-thought")',
      'model.baseUrl must be an http or https URL',
      'model.apiKey must be a non-empty string (any value for a server without auth)',
      'model.model must be a model name',
      'memo must be an AgentMemo ({ get, put }), e.g. new MemoryAgentMemo()',
      'prices["m"].inputUsdPerMTok must be a finite number ≥ 0',
      'budget.maxTokens must be a positive integer',
      'maxAnswerBytes must be an integer ≥ 256',
      'temperature must be a number from 0 to 2',
      expect.stringContaining('name "bad name!"'),
    ]);
  });

  it("refuses answer and tool-result limits a step's output could not carry", () => {
    expect(
      problems('qa.answer', {
        signature: 'question -> answer',
        model,
        memo: new MemoryAgentMemo(),
        maxAnswerBytes: 1_000_000,
        maxToolResultBytes: 1_000_000,
      }),
    ).toEqual([
      expect.stringMatching(
        /^maxAnswerBytes must be at most \d+ \(a step's output must fit a bus message\)$/,
      ),
      expect.stringMatching(/^maxToolResultBytes must be at most \d+/),
    ]);
  });

  it('needs tools for react, and no reasoning field of its own for chain-of-thought', () => {
    expect(
      problems('qa.answer', {
        signature: 'question -> answer',
        reasoning: 'react',
        model,
        memo: new MemoryAgentMemo(),
      }),
    ).toEqual(['reasoning "react" needs tools']);
    expect(
      problems('qa.answer', {
        signature: 'question -> reasoning, answer',
        reasoning: 'chain-of-thought',
        model,
        memo: new MemoryAgentMemo(),
      }),
    ).toEqual(['chain-of-thought adds a "reasoning" output field: the signature must not have one']);
  });

  it('checks tools: names, descriptions, schemas', () => {
    expect(
      problems('qa.answer', {
        signature: 'question -> answer',
        reasoning: 'react',
        model,
        memo: new MemoryAgentMemo(),
        tools: [
          {
            name: '1bad',
            description: '',
            parameters: { type: 'object', properties: { q: { type: 'string', description: '' } } },
            handler: () => 1,
          },
          {
            name: 'ok_tool',
            description: 'x',
            parameters: { type: 'string' } as never,
            handler: 'no' as never,
          },
        ],
      }),
    ).toEqual([
      'tool "1bad": name must match ^[A-Za-z][A-Za-z0-9_-]{0,63}$',
      'tool "1bad": description must be a non-empty string',
      'tool "1bad": parameter "q" needs a description',
      'tool "ok_tool": handler must be a function',
      'tool "ok_tool": parameters must be a JSON schema of type "object"',
    ]);
  });
});
