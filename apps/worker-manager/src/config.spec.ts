import { ValidationError } from '@multiagents/contracts';
import { loadConfig } from './config';

describe('worker-manager config', () => {
  it('refuses the memory backend and missing worker modules, listing both', () => {
    let error: unknown;
    try {
      loadConfig({});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    const problems = (error as ValidationError).problems;
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/MULTIAGENTS_WORKER_MODULES is required/);
    expect(problems[1]).toMatch(/needs a shared backend/);
  });
});
