import { ErrorCode, MultiAgentsError, ValidationError } from '@multiagents/contracts';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { DEFAULT_REDIS_BACKEND_OPTIONS, type RedisClientFactory } from './redis-backend-options';
import { MAX_PARTITIONS } from './redis-keys';

/** One node of a Redis Cluster, as `host:port`. */
export interface RedisClusterNode {
  readonly host: string;
  readonly port: number;
}

/** Options of {@link redisClusterClientFactory} and {@link inspectRedisCluster}. */
export interface RedisClusterClientOptions {
  /**
   * Seed nodes: `redis://[user:password@]host:port` (or `rediss://`), all with the same
   * credentials. Any reachable seed is enough to learn the cluster's nodes.
   */
  readonly seeds: readonly string[];
  /** A command a node has not answered within this long is rejected (commands role). */
  readonly commandTimeoutMs?: number;
  /** Longest wait between two reconnection attempts of the whole cluster. */
  readonly reconnectMaxDelayMs?: number;
  /** How long one probe of {@link inspectRedisCluster} waits for a node. */
  readonly probeTimeoutMs?: number;
}

/** What {@link inspectRedisCluster} found. */
export interface RedisClusterTopology {
  /** `cluster_state` of the first node that answered (`ok` when every slot is served). */
  readonly state: string;
  /** The masters serving slots, with their slot ranges. */
  readonly masters: ReadonlyArray<
    RedisClusterNode & { readonly slots: ReadonlyArray<readonly [number, number]> }
  >;
  /** Seeds and masters that did not answer, as `host:port`. */
  readonly unreachable: readonly string[];
}

interface ParsedSeeds {
  readonly nodes: RedisClusterNode[];
  readonly redisOptions: RedisOptions;
}

/** Host, port and shared credentials of the seeds; every problem at once (INVALID_ARGUMENT). */
export function parseClusterSeeds(seeds: readonly string[]): ParsedSeeds {
  const problems: string[] = [];
  const nodes: RedisClusterNode[] = [];
  let username = '';
  let password = '';
  let tls = false;
  if (seeds.length === 0) problems.push('at least one seed node is required');
  seeds.forEach((seed, i) => {
    let url: URL;
    try {
      url = new URL(seed);
    } catch {
      problems.push(`seed ${i + 1} is not a URL`);
      return;
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      problems.push(`seed ${i + 1}: protocol must be redis: or rediss:`);
      return;
    }
    nodes.push({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 6379) });
    if (i === 0) {
      username = decodeURIComponent(url.username);
      password = decodeURIComponent(url.password);
      tls = url.protocol === 'rediss:';
    } else if (
      decodeURIComponent(url.username) !== username ||
      decodeURIComponent(url.password) !== password ||
      (url.protocol === 'rediss:') !== tls
    ) {
      problems.push('seed nodes carry different credentials or protocols: give the same in each');
    }
  });
  if (problems.length > 0) throw new ValidationError('Redis Cluster seeds', problems);
  return {
    nodes,
    redisOptions: {
      ...(username ? { username } : {}),
      ...(password ? { password } : {}),
      ...(tls ? { tls: {} } : {}),
    },
  };
}

/**
 * A `connect` factory for the Redis backend that opens ioredis `Cluster` clients on `seeds`: the
 * commands client with a command timeout, readers that wait as long as it takes. MOVED and ASK
 * redirections, slot refreshes and a failover (a replica promoted) are the Cluster client's job.
 *
 * @example
 * createRedisBackend({ connect: redisClusterClientFactory({ seeds }), partitions: 6 });
 */
export function redisClusterClientFactory(options: RedisClusterClientOptions): RedisClientFactory {
  const { nodes, redisOptions } = parseClusterSeeds(options.seeds);
  const maxDelay = options.reconnectMaxDelayMs ?? DEFAULT_REDIS_BACKEND_OPTIONS.reconnectMaxDelayMs;
  const commandTimeout = options.commandTimeoutMs ?? DEFAULT_REDIS_BACKEND_OPTIONS.commandTimeoutMs;
  return (role) => {
    const clusterOptions: ClusterOptions = {
      // Reconnect for ever (a cluster that is down at start or restarting is waited for).
      clusterRetryStrategy: (times: number) =>
        Math.min(50 * 2 ** Math.min(times - 1, 20), maxDelay) + Math.floor(Math.random() * 50),
      // A failover takes the cluster's node timeout: keep retrying redirected and refused commands.
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
      retryDelayOnTryAgain: 100,
      redisOptions: {
        ...redisOptions,
        disconnectTimeout: 300,
        ...(role === 'commands'
          ? { commandTimeout, maxRetriesPerRequest: DEFAULT_REDIS_BACKEND_OPTIONS.maxRetriesPerRequest }
          : { maxRetriesPerRequest: null, enableAutoPipelining: false }),
      },
      ...(role === 'commands' ? {} : { enableAutoPipelining: false }),
    };
    return new Cluster(
      nodes.map((n) => ({ ...n })),
      clusterOptions,
    );
  };
}

/**
 * Asks every seed, then every master the cluster names, whether it answers (one short-lived
 * connection each, no retries): the cluster's state, its masters and slots, and the nodes that
 * did not answer. Throws UNAVAILABLE (retryable) naming the unreachable nodes unless at least one
 * node answered, the cluster says `ok` and every master answered.
 */
export async function inspectRedisCluster(options: RedisClusterClientOptions): Promise<RedisClusterTopology> {
  const { nodes, redisOptions } = parseClusterSeeds(options.seeds);
  const timeoutMs = options.probeTimeoutMs ?? 2_000;
  const unreachable = new Set<string>();
  const answered = new Set<string>();
  let state = '';
  let slots: unknown[] | undefined;
  for (const node of nodes) {
    const reply = await ask(node, redisOptions, timeoutMs, async (client) => ({
      info: await client.cluster('INFO'),
      slots: await client.cluster('SLOTS'),
    }));
    const name = `${node.host}:${node.port}`;
    if (reply === undefined) {
      unreachable.add(name);
      continue;
    }
    answered.add(name);
    if (slots === undefined) {
      state = /cluster_state:(\w+)/.exec(reply.info)?.[1] ?? '';
      slots = reply.slots;
    }
  }
  const masters = new Map<string, RedisClusterNode & { slots: [number, number][] }>();
  for (const entry of slots ?? []) {
    const [start, end, master] = entry as [number, number, [string, number, ...unknown[]]];
    const host = master[0] === '' ? (nodes[0]?.host ?? '127.0.0.1') : master[0];
    const name = `${host}:${master[1]}`;
    const known = masters.get(name) ?? { host, port: master[1], slots: [] };
    known.slots.push([start, end]);
    masters.set(name, known);
  }
  for (const [name, master] of masters) {
    if (answered.has(name) || unreachable.has(name)) continue;
    const pong = await ask(master, redisOptions, timeoutMs, (client) => client.ping());
    if (pong === undefined) unreachable.add(name);
  }
  const topology: RedisClusterTopology = {
    state,
    masters: [...masters.values()],
    unreachable: [...unreachable],
  };
  const mastersDown = [...masters.keys()].filter((name) => unreachable.has(name));
  if (slots === undefined || state !== 'ok' || mastersDown.length > 0) {
    const why =
      slots === undefined
        ? `no seed node answered (${[...unreachable].join(', ')})`
        : `cluster_state is ${state || 'unknown'}` +
          (unreachable.size > 0 ? `; unreachable: ${[...unreachable].join(', ')}` : '');
    throw new MultiAgentsError(ErrorCode.Unavailable, `Redis Cluster not ready: ${why}`, {
      retryable: true,
      details: { state, unreachable: [...unreachable], masters: masters.size },
    });
  }
  return topology;
}

/**
 * The partition count P for a cluster: the multiple of the masters (1 to 4 partitions per master)
 * whose hash tags `{p0}…{pP-1}` fall most evenly on the masters' slots (the busiest master holds
 * the fewest partitions beyond its share), the smallest such. The tags' slots are fixed by CRC16,
 * so P = masters alone may leave a master without a partition. P is fixed for a prefix once
 * recorded, so it is chosen once, when the prefix is first used.
 */
export function clusterPartitions(topology: Pick<RedisClusterTopology, 'masters'>): number {
  const masters = topology.masters;
  const m = Math.max(1, masters.length);
  const owner = (slot: number): number =>
    masters.findIndex((master) => master.slots.some(([start, end]) => slot >= start && slot <= end));
  let best = m;
  let bestLoad = Infinity;
  for (let perMaster = 1; perMaster <= 4 && perMaster * m <= MAX_PARTITIONS; perMaster += 1) {
    const p = perMaster * m;
    const counts = new Array<number>(m).fill(0);
    for (let i = 0; i < p; i += 1) {
      const index = owner(redisKeySlot(`{p${i}}`));
      if (index >= 0) counts[index] = (counts[index] ?? 0) + 1;
    }
    // The busiest master's load relative to an even share.
    const load = Math.max(...counts) / perMaster;
    if (load < bestLoad - 1e-9) {
      best = p;
      bestLoad = load;
    }
  }
  return best;
}

/**
 * Reads one hash field from the master that serves `key`'s slot (a short-lived connection): the
 * partition count recorded for a prefix, before the backend opens.
 */
export async function readClusterHashField(
  options: RedisClusterClientOptions,
  topology: Pick<RedisClusterTopology, 'masters'>,
  key: string,
  field: string,
): Promise<string | null> {
  const { redisOptions } = parseClusterSeeds(options.seeds);
  const slot = redisKeySlot(key);
  const master = topology.masters.find((m) => m.slots.some(([start, end]) => slot >= start && slot <= end));
  if (master === undefined) return null;
  const value = await ask(master, redisOptions, options.probeTimeoutMs ?? 2_000, (client) =>
    client.hget(key, field),
  );
  if (value === undefined) {
    throw new MultiAgentsError(
      ErrorCode.Unavailable,
      `Redis Cluster node ${master.host}:${master.port} did not answer`,
      {
        retryable: true,
      },
    );
  }
  return value;
}

async function ask<T>(
  node: RedisClusterNode,
  redisOptions: RedisOptions,
  timeoutMs: number,
  work: (client: Redis) => Promise<T>,
): Promise<T | undefined> {
  const client = new Redis({
    ...redisOptions,
    host: node.host,
    port: node.port,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await work(client);
  } catch {
    return undefined;
  } finally {
    client.disconnect();
  }
}

/** The Redis Cluster hash slot of a key (CRC16/XMODEM of its hash tag, or of the key, mod 16384). */
export function redisKeySlot(key: string): number {
  const bytes = Buffer.from(key, 'utf8');
  let start = 0;
  let end = bytes.length;
  const open = bytes.indexOf(0x7b); // '{'
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // '}'
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i += 1) {
    crc ^= (bytes[i] as number) << 8;
    for (let bit = 0; bit < 8; bit += 1)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}
