import { ValidationError } from '@multiagents/contracts';
import { DEFAULT_METRICS_HTTP_PORT, loadConfig } from './config';

describe('metrics-collector config', () => {
  it('reads the shared settings, the HTTP port (9464 by default) and the label caps', () => {
    expect(loadConfig({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'redis://127.0.0.1:6380' })).toMatchObject({
      backend: 'redis',
      httpPort: DEFAULT_METRICS_HTTP_PORT,
      httpHost: '127.0.0.1',
    });
    expect(
      loadConfig({
        MULTIAGENTS_BACKEND: 'redis',
        REDIS_URL: 'redis://127.0.0.1:6380',
        HTTP_PORT: '0',
        MULTIAGENTS_VISIBILITY_TIMEOUT_MS: '2000',
        MULTIAGENTS_METRICS_MAX_WORKFLOWS: '5',
      }),
    ).toMatchObject({ httpPort: 0, visibilityTimeoutMs: 2000, maxWorkflows: 5 });
  });

  it('lists every problem at once: the memory backend, bad numbers, bad shared settings', () => {
    let error: unknown;
    try {
      loadConfig({
        MULTIAGENTS_BACKEND: 'memory',
        LOG_LEVEL: 'loud',
        MULTIAGENTS_MAX_DELIVERIES: '0',
        MULTIAGENTS_METRICS_MAX_WORKERS: 'many',
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems).toEqual([
      'LOG_LEVEL=loud: must be one of trace, debug, info, warn, error, fatal, silent',
      'MULTIAGENTS_BACKEND=memory: a separate metrics-collector needs a shared backend (redis or nats)',
      'MULTIAGENTS_MAX_DELIVERIES=0: must be a positive integer',
      'MULTIAGENTS_METRICS_MAX_WORKERS=many: must be a positive integer',
    ]);
  });
});
