import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { openBackend } from '@multiagents/backends';
import { redisKeySlot } from '@multiagents/redis';
import {
  startNatsClusterProcesses,
  startNatsServer,
  startRedisClusterProcesses,
  startRedisServer,
  waitFor,
  type NatsClusterProcesses,
  type RedisClusterNodeInfo,
  type RedisClusterProcesses,
  type ServerProcess,
} from '@multiagents/testing';
import type { BackendUnderTest, BrokerSettings } from './fault-scenario';

/** Redis partitions in the fault tests: several, so a transition's keys and a partition's consumers are exercised. */
const REDIS_PARTITIONS = 3;

/**
 * Redis with the AOF. `durable`: fsync on every write (a kill -9 of redis-server loses nothing
 * acknowledged); `production`: fsync every second, the usual setting, which may lose the last
 * second — runs the broker forgot must be reported and nothing left waiting.
 */
export function redisUnderTest(settings: BrokerSettings = 'durable'): BackendUnderTest {
  return {
    name: 'redis',
    settings,
    startServer: () =>
      startRedisServer({ appendOnly: true, appendFsync: settings === 'durable' ? 'always' : 'everysec' }),
    env: (server) => ({
      MULTIAGENTS_BACKEND: 'redis',
      REDIS_URL: server.url,
      MULTIAGENTS_REDIS_PARTITIONS: String(REDIS_PARTITIONS),
    }),
    open: (server, prefix) =>
      openBackend({ backend: 'redis', redisUrl: server.url, redisPartitions: REDIS_PARTITIONS, prefix }),
  };
}

/**
 * NATS with JetStream, its store directory kept across kill -9 and restart. nats-server 2.9
 * writes its file store asynchronously and has no per-write sync setting, so its defaults are
 * the only settings: a kill -9 may lose what it acknowledged last (`production`).
 */
export function natsUnderTest(): BackendUnderTest {
  return {
    name: 'nats',
    settings: 'production',
    startServer: () => startNatsServer(),
    env: (server) => ({ MULTIAGENTS_BACKEND: 'nats', NATS_URL: server.url }),
    open: (server, prefix) => openBackend({ backend: 'nats', natsUrl: server.url, prefix }),
  };
}

/** A cluster as the scenario's one "server": the seeds as its URL, every node stopped at the end. */
function clusterFacade(seeds: string, first: ServerProcess, stopAll: () => Promise<void>): ServerProcess {
  return {
    port: first.port,
    url: seeds,
    dir: first.dir,
    pid: () => first.pid(),
    kill: () => {
      throw new Error('a cluster is killed node by node (killNode)');
    },
    exited: () => Promise.reject(new Error('a cluster is killed node by node (killNode)')),
    restart: () => Promise.reject(new Error('a cluster is restarted node by node')),
    stop: stopAll,
  };
}

const run = promisify(execFile);

/**
 * A Redis Cluster of 3 masters and 3 replicas (AOF, appendfsync always) reached through its six
 * seeds, P left to the services (a multiple of the masters). The fault kills -9 the master that
 * serves the most partitions; its replica takes over after the node timeout. Replication is
 * asynchronous, so writes the master acknowledged just before dying may be missing on the
 * replica: `production` settings (runs the cluster forgot are reported, nothing may be left
 * waiting).
 */
export function redisClusterUnderTest(): BackendUnderTest {
  let cluster: RedisClusterProcesses | undefined;
  return {
    name: 'redis',
    label: 'redis-cluster',
    settings: 'production',
    startServer: async () => {
      cluster = await startRedisClusterProcesses({
        masters: 3,
        replicasPerMaster: 1,
        appendFsync: 'always',
        nodeTimeoutMs: 2_000,
      });
      const c = cluster;
      return clusterFacade(c.seeds, c.nodes[0]!, () => c.stop());
    },
    env: (server) => ({ MULTIAGENTS_BACKEND: 'redis', REDIS_URL: server.url }),
    open: (server, prefix) =>
      openBackend({ backend: 'redis', redisUrl: server.url, redisCluster: true, prefix }),
    killNode: async (prefix) => {
      const c = cluster!;
      const live = c.nodes.find((n) => n.pid() !== undefined)!;
      const { stdout } = await run('redis-cli', [
        '-c',
        '-p',
        String(live.port),
        'HGET',
        `${prefix}:config`,
        'partitions',
      ]);
      const partitions = Number(stdout.trim());
      if (!(partitions > 0)) throw new Error(`no partitions recorded for ${prefix}: ${stdout}`);
      const nodes = (await c.clusterNodes(live.port)) ?? [];
      const masters = nodes.filter((n) => n.role === 'master' && n.slots.length > 0);
      const served = (m: RedisClusterNodeInfo): number =>
        Array.from({ length: partitions }, (_, i) => redisKeySlot(`{p${i}}`)).filter((slot) =>
          m.slots.some(([start, end]) => slot >= start && slot <= end),
        ).length;
      const victim = [...masters].sort((a, b) => served(b) - served(a))[0];
      if (victim === undefined || served(victim) === 0) throw new Error('no master serves a partition');
      const replica = nodes.find((n) => n.masterId === victim.id);
      if (replica === undefined) throw new Error(`master ${victim.port} has no replica`);
      const process = c.nodes.find((n) => n.port === victim.port)!;
      const killedAt = Date.now();
      process.kill('SIGKILL');
      // Taken over: the replica is a master serving the victim's slots, and the cluster is ok again.
      await waitFor(
        async () => {
          const seen = await c.clusterNodes(replica.port);
          const promoted = seen?.find((n) => n.id === replica.id);
          return (
            promoted?.role === 'master' && promoted.slots.length > 0 && (await c.state(replica.port)) === 'ok'
          );
        },
        { timeoutMs: 60_000, intervalMs: 50, description: `replica ${replica.port} promoted` },
      );
      const failoverMs = Date.now() - killedAt;
      return {
        failoverMs,
        evidence: `master 127.0.0.1:${victim.port} (serving ${served(victim)} of ${partitions} partitions) killed -9; its replica 127.0.0.1:${replica.port} was promoted and cluster_state ok after ${failoverMs} ms`,
      };
    },
  };
}

/**
 * A 3-node JetStream cluster with every stream and bucket at 3 replicas
 * (MULTIAGENTS_NATS_REPLICAS=3), reached through its three seeds. The fault kills -9 the leader of
 * the bus stream; acknowledged writes are on a majority, so nothing acknowledged may be lost
 * (`durable`).
 */
export function natsClusterUnderTest(): BackendUnderTest {
  let cluster: NatsClusterProcesses | undefined;
  const leaderOf = async (stream: string, servers: NatsClusterProcesses['servers']): Promise<string> => {
    for (const server of servers) {
      if (server.pid() === undefined) continue;
      try {
        const res = await fetch(`${server.monitorUrl}/jsz?streams=true`, {
          signal: AbortSignal.timeout(2_000),
        });
        const jsz = (await res.json()) as {
          account_details?: { stream_detail?: { name: string; cluster?: { leader?: string } }[] }[];
        };
        const detail = (jsz.account_details ?? [])
          .flatMap((a) => a.stream_detail ?? [])
          .find((s) => s.name === stream);
        if (detail?.cluster?.leader) return detail.cluster.leader;
      } catch {
        // that server does not answer: ask the next
      }
    }
    return '';
  };
  return {
    name: 'nats',
    label: 'nats-cluster',
    settings: 'durable',
    startServer: async () => {
      cluster = await startNatsClusterProcesses(3);
      const c = cluster;
      return clusterFacade(c.seeds, c.servers[0]!, () => c.stop());
    },
    env: (server) => ({ MULTIAGENTS_BACKEND: 'nats', NATS_URL: server.url, MULTIAGENTS_NATS_REPLICAS: '3' }),
    open: (server, prefix) => openBackend({ backend: 'nats', natsUrl: server.url, natsReplicas: 3, prefix }),
    killNode: async (prefix) => {
      const c = cluster!;
      const stream = `${prefix}_BUS`;
      const leader = await leaderOf(stream, c.servers);
      const victim = c.servers.find((s) => s.name === leader);
      if (victim === undefined) throw new Error(`no leader found for ${stream}`);
      const killedAt = Date.now();
      victim.kill('SIGKILL');
      const survivors = c.servers.filter((s) => s !== victim);
      // Taken over: a surviving server names another leader for the stream.
      let next = '';
      await waitFor(
        async () => {
          next = await leaderOf(stream, survivors);
          return next !== '' && next !== leader;
        },
        { timeoutMs: 60_000, intervalMs: 50, description: `a new leader of ${stream}` },
      );
      const failoverMs = Date.now() - killedAt;
      // A supervisor brings the server back (same store): JetStream 2.9 keeps placing new
      // ephemeral consumers (KV key listings) on a dead peer until it returns.
      const killedPid = victim.pid();
      await victim.restart();
      return {
        failoverMs,
        evidence: `server ${leader} (leader of ${stream}, pid ${killedPid}) killed -9; ${next} became its leader after ${failoverMs} ms; ${leader} restarted as pid ${victim.pid()}`,
      };
    },
  };
}
