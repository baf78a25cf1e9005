import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '@multiagents/contracts';
import { DEFAULT_MONITOR_GRPC_PORT, DEFAULT_MONITOR_HTTP_PORT, loadConfig } from './config';

describe('event-monitor config', () => {
  it('reads the shared settings, its ports and the watchdog settings', () => {
    expect(loadConfig({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'redis://127.0.0.1:6380' })).toMatchObject({
      backend: 'redis',
      grpcPort: DEFAULT_MONITOR_GRPC_PORT,
      httpPort: DEFAULT_MONITOR_HTTP_PORT,
      grpcHost: '127.0.0.1',
      stuckThresholdsMs: {},
    });
    expect(
      loadConfig({
        MULTIAGENTS_BACKEND: 'nats',
        NATS_URL: 'nats://127.0.0.1:4223',
        GRPC_PORT: '0',
        HTTP_PORT: '0',
        MULTIAGENTS_STUCK_THRESHOLD_MS: '60000',
        MULTIAGENTS_STUCK_THRESHOLDS: 'order_processing=30000, slow.flow=3600000',
        MULTIAGENTS_MONITOR_RETENTION_MS: '86400000',
        MULTIAGENTS_STUCK_SCAN_INTERVAL_MS: '500',
      }),
    ).toMatchObject({
      grpcPort: 0,
      httpPort: 0,
      stuckThresholdMs: 60_000,
      stuckThresholdsMs: { order_processing: 30_000, 'slow.flow': 3_600_000 },
      timelineRetentionMs: 86_400_000,
      stuckScanIntervalMs: 500,
    });
  });

  it('reads the dashboard settings', () => {
    const base = { MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'redis://127.0.0.1:6380' };
    expect(
      loadConfig({
        ...base,
        MULTIAGENTS_ORCHESTRATOR_ADDRESS: 'orchestrator:50051',
        MULTIAGENTS_ORCHESTRATOR_TOKEN: 't0k',
        MULTIAGENTS_JAEGER_URL: 'http://jaeger:16686/',
      }),
    ).toMatchObject({
      orchestratorAddress: 'orchestrator:50051',
      orchestratorToken: 't0k',
      jaegerUrl: 'http://jaeger:16686',
    });
    expect(loadConfig(base).orchestratorAddress).toBeUndefined();
    expect(() =>
      loadConfig({
        ...base,
        MULTIAGENTS_ORCHESTRATOR_ADDRESS: 'http://x',
        MULTIAGENTS_JAEGER_URL: 'javascript:alert(1)',
      }),
    ).toThrow(
      expect.objectContaining({
        problems: [
          'MULTIAGENTS_ORCHESTRATOR_ADDRESS=http://x: must be host:port',
          'MULTIAGENTS_JAEGER_URL=javascript:alert(1): must be an http(s) address',
        ],
      }) as Error,
    );
  });

  it('reads the TLS settings of the orchestrator client, its files at once, and refuses what does not fit', () => {
    const base = { MULTIAGENTS_BACKEND: 'redis', REDIS_URL: 'redis://127.0.0.1:6380' };
    const dir = mkdtempSync(join(tmpdir(), 'monitor-config-'));
    try {
      const file = (name: string, text: string): string => {
        writeFileSync(join(dir, name), text);
        return join(dir, name);
      };
      const ca = file('ca.pem', 'CA');
      const cert = file('cert.pem', 'CERT');
      const key = file('key.pem', 'KEY');
      expect(loadConfig(base).orchestratorTls).toBeUndefined();
      expect(loadConfig({ ...base, MULTIAGENTS_ORCHESTRATOR_TLS: 'true' }).orchestratorTls).toEqual({});
      expect(
        loadConfig({
          ...base,
          MULTIAGENTS_ORCHESTRATOR_TLS_CA: ca,
          MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_CERT: cert,
          MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_KEY: key,
          MULTIAGENTS_ORCHESTRATOR_TLS_SERVER_NAME: 'orchestrator.internal',
        }).orchestratorTls,
      ).toEqual({
        ca: Buffer.from('CA'),
        cert: Buffer.from('CERT'),
        key: Buffer.from('KEY'),
        serverName: 'orchestrator.internal',
      });
      expect(() =>
        loadConfig({
          ...base,
          MULTIAGENTS_ORCHESTRATOR_TLS: 'yes',
          MULTIAGENTS_ORCHESTRATOR_TLS_CA: join(dir, 'missing.pem'),
          MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_CERT: cert,
        }),
      ).toThrow(
        expect.objectContaining({
          problems: [
            'MULTIAGENTS_ORCHESTRATOR_TLS=yes: must be true or false',
            `MULTIAGENTS_ORCHESTRATOR_TLS_CA=${join(dir, 'missing.pem')}: cannot be read (ENOENT)`,
            'MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_CERT and MULTIAGENTS_ORCHESTRATOR_TLS_CLIENT_KEY go together',
          ],
        }) as Error,
      );
      expect(() =>
        loadConfig({ ...base, MULTIAGENTS_ORCHESTRATOR_TLS: 'false', MULTIAGENTS_ORCHESTRATOR_TLS_CA: ca }),
      ).toThrow(/MULTIAGENTS_ORCHESTRATOR_TLS=false, yet/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lists every problem at once', () => {
    let error: unknown;
    try {
      loadConfig({
        MULTIAGENTS_BACKEND: 'memory',
        GRPC_PORT: 'x',
        MULTIAGENTS_STUCK_THRESHOLD_MS: '0',
        MULTIAGENTS_STUCK_THRESHOLDS: 'a=1,b,=3',
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems).toEqual([
      'GRPC_PORT=x: must be a port number from 0 to 65535',
      'MULTIAGENTS_BACKEND=memory: a separate event-monitor needs a shared backend (redis or nats)',
      'MULTIAGENTS_STUCK_THRESHOLD_MS=0: must be a positive integer',
      'MULTIAGENTS_STUCK_THRESHOLDS: "b" must be <workflowId>=<positive ms>',
      'MULTIAGENTS_STUCK_THRESHOLDS: "=3" must be <workflowId>=<positive ms>',
    ]);
  });
});
