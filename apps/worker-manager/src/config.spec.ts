import { ValidationError } from '@multiagents/contracts';
import { loadConfig } from './config';

function problemsOf(env: NodeJS.ProcessEnv): readonly string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ValidationError) return err.problems;
    throw err;
  }
  return [];
}

describe('worker-manager config', () => {
  it('refuses the memory backend and missing worker modules, listing both', () => {
    const problems = problemsOf({});
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/MULTIAGENTS_WORKER_MODULES is required/);
    expect(problems[1]).toMatch(/needs a shared backend/);
  });

  it('reads a Redis replica with its delivery tuning', () => {
    expect(
      loadConfig({
        MULTIAGENTS_BACKEND: 'redis',
        REDIS_URL: 'redis://127.0.0.1:6400',
        MULTIAGENTS_WORKER_MODULES: 'w.js',
        MULTIAGENTS_VISIBILITY_TIMEOUT_MS: '2000',
        MULTIAGENTS_MAX_DELIVERIES: '7',
      }),
    ).toMatchObject({
      backend: 'redis',
      workerModules: ['w.js'],
      visibilityTimeoutMs: 2000,
      maxDeliveries: 7,
    });
  });

  it('lists a wrong REDIS_URL and bad tuning together', () => {
    const problems = problemsOf({
      MULTIAGENTS_BACKEND: 'redis',
      REDIS_URL: 'http://nope',
      MULTIAGENTS_WORKER_MODULES: 'w.js',
      MULTIAGENTS_VISIBILITY_TIMEOUT_MS: '-1',
    });
    expect(problems).toEqual([
      expect.stringMatching(/^REDIS_URL=http:\/\/nope/),
      'MULTIAGENTS_VISIBILITY_TIMEOUT_MS=-1: must be a positive integer',
    ]);
  });
});
