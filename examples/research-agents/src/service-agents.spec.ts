import { join } from 'node:path';
import { LLM_ENV } from '@multiagents/agents';
import { loadWorkerModules } from '@multiagents/worker-sdk';
import { ResearchWorker } from './research-workers';

const MODULE = join(__dirname, 'service-agents.ts');
const memo = { get: async () => undefined, put: async <T>(_key: string, record: T) => record };

describe('the research worker module', () => {
  const saved = { ...process.env };
  afterEach(() => {
    process.env = { ...saved };
  });

  it("hosts the research workers on the service's memo", () => {
    process.env[LLM_ENV.baseUrl] = 'http://127.0.0.1:9/v1';
    process.env[LLM_ENV.apiKey] = 'sk-test';
    process.env[LLM_ENV.model] = 'fake-model';
    const names = loadWorkerModules([MODULE], { memo }).map((w) => w.name);
    expect(names).toEqual(
      expect.arrayContaining([ResearchWorker.Plan, ResearchWorker.Answer, ResearchWorker.Write]),
    );
  });

  it('says which variables to set when the model is not configured', () => {
    delete process.env[LLM_ENV.baseUrl];
    delete process.env[LLM_ENV.apiKey];
    delete process.env[LLM_ENV.model];
    expect(() => loadWorkerModules([MODULE], { memo })).toThrow(
      /createWorkers threw: set MULTIAGENTS_LLM_BASE_URL, MULTIAGENTS_LLM_API_KEY and MULTIAGENTS_LLM_MODEL/,
    );
  });
});
