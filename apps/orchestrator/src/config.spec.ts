import { ValidationError } from '@multiagents/contracts';
import { loadConfig } from './config';

describe('orchestrator config', () => {
  it('runs the embedded mode with worker modules', () => {
    const config = loadConfig({ MULTIAGENTS_WORKER_MODULES: 'a.js,b.js', MULTIAGENTS_DEFINITIONS: 'w.yaml' });
    expect(config).toMatchObject({
      backend: 'memory',
      workerModules: ['a.js', 'b.js'],
      definitionFiles: ['w.yaml'],
    });
  });

  it('lists every problem, including a backend this build does not have', () => {
    let error: unknown;
    try {
      loadConfig({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'redis://localhost', LOG_LEVEL: 'loud' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems).toEqual([
      'LOG_LEVEL=loud: must be one of trace, debug, info, warn, error, fatal, silent',
    ]);
  });

  it('requires worker modules in the embedded mode', () => {
    expect(() => loadConfig({})).toThrow(/MULTIAGENTS_WORKER_MODULES is required/);
  });
});
