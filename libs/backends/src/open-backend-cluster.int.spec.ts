import { ErrorCode, MultiAgentsError, ValidationError } from '@multiagents/contracts';
import {
  startNatsClusterProcesses,
  startNatsServer,
  startRedisClusterProcesses,
  type NatsClusterProcesses,
  type RedisClusterProcesses,
} from '@multiagents/testing';
import { openBackend } from './open-backend';
import { parseServiceConfig } from './service-config';

// The services' own path onto the brokers' clusters: REDIS_URL with several seeds, NATS_URL with
// every server, MULTIAGENTS_NATS_REPLICAS checked against the cluster.
describe('openBackend on a Redis Cluster', () => {
  let cluster: RedisClusterProcesses | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  it('uses Cluster clients and spreads the default P over the masters found', async () => {
    cluster = await startRedisClusterProcesses({ masters: 3, replicasPerMaster: 0 });
    const config = parseServiceConfig(
      { MULTIAGENTS_BACKEND: 'redis', REDIS_URL: cluster.seeds, MULTIAGENTS_PREFIX: 'svc-a' },
      { grpcPort: 1 },
    );
    const backend = await openBackend(config);
    try {
      await backend.runs.get('none');
      // 3 masters: 12 partitions (3, 3 and 6 per master: the tags' slots are fixed by CRC16).
      const keys = await Promise.all(cluster.nodes.map((n) => nodeKeys(cluster!, n.port)));
      expect(keys.flat()).toContain('svc-a:config');
      const recorded = await openBackend(config); // a second process reads the recorded P
      await recorded.registry.list();
      await recorded.close();
    } finally {
      await backend.close();
    }
    const partitions = await configPartitions(cluster, 'svc-a');
    expect(partitions).toBe('12');
  }, 60_000);

  it('keeps a partly reachable cluster not ready, naming the node that does not answer', async () => {
    cluster = await startRedisClusterProcesses({ masters: 3, replicasPerMaster: 0 });
    const victim = cluster.nodes[1]!;
    victim.kill('SIGKILL');
    await victim.exited();
    const config = parseServiceConfig(
      { MULTIAGENTS_BACKEND: 'redis', REDIS_URL: cluster.seeds },
      { grpcPort: 1 },
    );
    let error: unknown;
    try {
      await openBackend({ ...config, redisUrl: cluster.seeds });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(MultiAgentsError);
    expect((error as MultiAgentsError).code).toBe(ErrorCode.Unavailable);
    expect((error as MultiAgentsError).retryable).toBe(true);
    expect((error as Error).message).toContain(`127.0.0.1:${victim.port}`);
    await victim.restart();
    const backend = await openBackend({ ...config, redisUrl: cluster.seeds });
    await backend.registry.list();
    await backend.close();
  }, 60_000);
});

describe('openBackend on NATS with MULTIAGENTS_NATS_REPLICAS', () => {
  let nats: NatsClusterProcesses | undefined;
  afterAll(async () => {
    await nats?.stop();
  });

  it('refuses more replicas than one server has, naming both numbers (exit 78)', async () => {
    const server = await startNatsServer();
    try {
      const config = parseServiceConfig(
        { MULTIAGENTS_BACKEND: 'nats', NATS_URL: server.url, MULTIAGENTS_NATS_REPLICAS: '3' },
        { grpcPort: 1 },
      );
      const error = await openBackend(config).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).problems).toEqual([
        expect.stringMatching(/^MULTIAGENTS_NATS_REPLICAS=3 is more than the 1 server\(s\)/),
      ]);
    } finally {
      await server.stop();
    }
  }, 30_000);

  it('creates R3 streams and buckets on a 3-node cluster, and refuses R5 naming 5 and 3', async () => {
    nats = await startNatsClusterProcesses(3);
    const env = { MULTIAGENTS_BACKEND: 'nats', NATS_URL: nats.seeds, MULTIAGENTS_PREFIX: 'svc-r' };
    const tooMany = await openBackend(
      parseServiceConfig({ ...env, MULTIAGENTS_NATS_REPLICAS: '5' }, { grpcPort: 1 }),
    ).catch((err: unknown) => err);
    expect(tooMany).toBeInstanceOf(ValidationError);
    expect((tooMany as ValidationError).problems[0]).toMatch(
      /^MULTIAGENTS_NATS_REPLICAS=5 is more than the 3 server\(s\) of the NATS cluster/,
    );
    const backend = await openBackend(
      parseServiceConfig({ ...env, MULTIAGENTS_NATS_REPLICAS: '3' }, { grpcPort: 1 }),
    );
    try {
      await backend.registry.list();
      const res = await fetch(`${nats.servers[0]!.monitorUrl}/jsz?streams=true&config=true`);
      const jsz = (await res.json()) as {
        account_details?: { stream_detail?: { name: string; config?: { num_replicas?: number } }[] }[];
      };
      const streams = (jsz.account_details ?? []).flatMap((a) => a.stream_detail ?? []);
      const ours = streams.filter((s) => s.name.includes('svc-r'));
      expect(ours.length).toBeGreaterThanOrEqual(5); // bus, dead letters, timers, 2 buckets
      expect(ours.map((s) => s.config?.num_replicas)).toEqual(ours.map(() => 3));
    } finally {
      await backend.close();
    }
  }, 60_000);
});

async function nodeKeys(cluster: RedisClusterProcesses, port: number): Promise<string[]> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve) =>
    execFile('redis-cli', ['-p', String(port), '--scan'], (err, stdout) =>
      resolve(err ? [] : stdout.split('\n').filter(Boolean)),
    ),
  );
}

async function configPartitions(cluster: RedisClusterProcesses, prefix: string): Promise<string> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve) =>
    execFile(
      'redis-cli',
      ['-c', '-p', String(cluster.nodes[0]!.port), 'HGET', `${prefix}:config`, 'partitions'],
      (err, stdout) => resolve(err ? '' : stdout.trim()),
    ),
  );
}
