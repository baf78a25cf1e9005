import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort, startServerProcess, type ServerProcess } from './server-process';
import { waitFor } from './wait-for';

const run = promisify(execFile);

/** One line of `CLUSTER NODES`: who a node is, what it serves, and whom it replicates. */
export interface RedisClusterNodeInfo {
  readonly id: string;
  readonly port: number;
  readonly role: 'master' | 'replica';
  /** Flagged `fail` (or `fail?`) by the node asked. */
  readonly failing: boolean;
  /** The master's id, for a replica. */
  readonly masterId: string | undefined;
  readonly slots: ReadonlyArray<readonly [number, number]>;
}

/** Options of {@link startRedisClusterProcesses}. */
export interface RedisClusterOptions {
  readonly masters?: number;
  /** Replicas per master (`redis-cli --cluster create --cluster-replicas`). */
  readonly replicasPerMaster?: number;
  /** AOF fsync: `always` (nothing acknowledged by a master is lost to its own crash) or `everysec`. */
  readonly appendFsync?: 'always' | 'everysec';
  /** `cluster-node-timeout`: how long a master may be silent before its replica takes over. */
  readonly nodeTimeoutMs?: number;
}

/** A private Redis Cluster: its node processes and what they say about each other. */
export interface RedisClusterProcesses {
  readonly nodes: readonly ServerProcess[];
  /** `redis://127.0.0.1:<port>` of every node, comma-separated (what REDIS_URL takes). */
  readonly seeds: string;
  /** `CLUSTER NODES` as one node sees it (undefined when it does not answer). */
  clusterNodes(port: number): Promise<RedisClusterNodeInfo[] | undefined>;
  /** `cluster_state` of one node ('' when it does not answer). */
  state(port: number): Promise<string>;
  stop(): Promise<void>;
}

async function redisCli(port: number, ...args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
      timeout: 3_000,
    });
    return stdout;
  } catch {
    return undefined;
  }
}

function parseClusterNodes(text: string): RedisClusterNodeInfo[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [id = '', address = '', flags = '', master = '-', , , , , ...slots] = line.trim().split(' ');
      const flagList = flags.split(',');
      return {
        id,
        port: Number(/:(\d+)@/.exec(address)?.[1] ?? 0),
        role: flagList.includes('master') ? ('master' as const) : ('replica' as const),
        failing: flagList.includes('fail') || flagList.includes('fail?'),
        masterId: master === '-' ? undefined : master,
        slots: slots
          .filter((s) => !s.startsWith('['))
          .map((s) => {
            const [a, b] = s.split('-');
            return [Number(a), Number(b ?? a)] as const;
          }),
      };
    });
}

/**
 * Starts a Redis Cluster on loopback for a test: `masters × (1 + replicasPerMaster)`
 * `redis-server --cluster-enabled yes` processes (AOF on, each in its own temp dir), joined with
 * `redis-cli --cluster create --cluster-replicas <r> --cluster-yes`; resolves once every node says
 * `cluster_state:ok` and every replica's link to its master is up.
 *
 * @example
 * const cluster = await startRedisClusterProcesses({ masters: 3, replicasPerMaster: 1 });
 * process.env.REDIS_URL = cluster.seeds;
 */
export async function startRedisClusterProcesses(
  options: RedisClusterOptions = {},
): Promise<RedisClusterProcesses> {
  const masters = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 1;
  const nodes: ServerProcess[] = [];
  const clusterNodes = async (port: number): Promise<RedisClusterNodeInfo[] | undefined> => {
    const text = await redisCli(port, 'CLUSTER', 'NODES');
    return text === undefined ? undefined : parseClusterNodes(text);
  };
  const state = async (port: number): Promise<string> =>
    /cluster_state:(\w+)/.exec((await redisCli(port, 'CLUSTER', 'INFO')) ?? '')?.[1] ?? '';
  try {
    const started = await Promise.all(
      Array.from({ length: masters * (1 + replicas) }, async () => {
        // Its own bus port (not port + 10000, which may be taken or past 65535).
        const busPort = await freePort();
        return startServerProcess(
          'redis-cluster-node',
          'redis-server',
          (port, dir) => [
            '--port',
            String(port),
            '--bind',
            '127.0.0.1',
            '--dir',
            dir,
            '--cluster-enabled',
            'yes',
            '--cluster-port',
            String(busPort),
            '--cluster-config-file',
            `${dir}/nodes.conf`,
            '--cluster-node-timeout',
            String(options.nodeTimeoutMs ?? 2_000),
            '--save',
            '',
            '--appendonly',
            'yes',
            '--appendfsync',
            options.appendFsync ?? 'always',
            '--protected-mode',
            'no',
          ],
          (port) => `redis://127.0.0.1:${port}`,
        );
      }),
    );
    nodes.push(...started);
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      { timeout: 30_000 },
    );
    await waitFor(
      async () => {
        const states = await Promise.all(nodes.map((n) => state(n.port)));
        if (!states.every((s) => s === 'ok')) return false;
        const links = await Promise.all(
          nodes.map((n) => redisCli(n.port, 'INFO', 'replication').then((t) => t ?? '')),
        );
        return links.every((text) => !text.includes('role:slave') || text.includes('master_link_status:up'));
      },
      { timeoutMs: 30_000, intervalMs: 100, description: 'cluster_state:ok and every replica linked' },
    );
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw err;
  }
  return {
    nodes,
    seeds: nodes.map((n) => n.url).join(','),
    clusterNodes,
    state,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

/** A private JetStream cluster: its servers (with monitoring ports) by name. */
export interface NatsClusterProcesses {
  readonly servers: ReadonlyArray<ServerProcess & { readonly name: string; readonly monitorUrl: string }>;
  /** Every client URL, comma-separated (what NATS_URL takes). */
  readonly seeds: string;
  /** The JetStream meta leader's name, as one server's `/jsz` says ('' when it has none or is down). */
  metaLeader(name: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts a JetStream cluster on loopback: `size` nats-servers (`-js`, a store dir each, a unique
 * `--name`, one `--cluster_name`, routes between local ports, monitoring on) and resolves once
 * every server names the same meta leader.
 *
 * @example
 * const cluster = await startNatsClusterProcesses(3);
 * createNatsBackend({ servers: cluster.seeds.split(','), replicas: 3 });
 */
export async function startNatsClusterProcesses(size = 3): Promise<NatsClusterProcesses> {
  const ports = await Promise.all(
    Array.from({ length: size }, async () => ({
      client: await freePort(),
      route: await freePort(),
      monitor: await freePort(),
    })),
  );
  const routes = ports.map((p) => `nats://127.0.0.1:${p.route}`).join(',');
  const servers: (ServerProcess & { name: string; monitorUrl: string })[] = [];
  const metaLeader = async (name: string): Promise<string> => {
    const server = servers.find((s) => s.name === name);
    if (!server) return '';
    try {
      const res = await fetch(`${server.monitorUrl}/jsz`, { signal: AbortSignal.timeout(2_000) });
      const body = (await res.json()) as { meta_cluster?: { leader?: string } };
      return body.meta_cluster?.leader ?? '';
    } catch {
      return '';
    }
  };
  try {
    const started = await Promise.all(
      ports.map(async (p, i) => {
        const name = `n${i + 1}`;
        const server = await startServerProcess(
          'nats-cluster-node',
          'nats-server',
          (port, dir) => [
            '-a',
            '127.0.0.1',
            '-p',
            String(port),
            '-js',
            '-sd',
            dir,
            '--name',
            name,
            '--cluster_name',
            'multiagents',
            '--cluster',
            `nats://127.0.0.1:${p.route}`,
            '--routes',
            routes,
            '-m',
            String(p.monitor),
          ],
          (port) => `nats://127.0.0.1:${port}`,
          undefined,
          p.client,
        );
        return { ...server, name, monitorUrl: `http://127.0.0.1:${p.monitor}` };
      }),
    );
    servers.push(...started);
    await waitFor(
      async () => {
        const leaders = await Promise.all(servers.map((s) => metaLeader(s.name)));
        return leaders[0] !== '' && leaders.every((l) => l === leaders[0]);
      },
      { timeoutMs: 30_000, intervalMs: 100, description: 'one JetStream meta leader named by every server' },
    );
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    throw err;
  }
  return {
    servers,
    seeds: servers.map((s) => s.url).join(','),
    metaLeader,
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}
