/**
 * What a broker did, read from its own counters, so `pnpm bench` can print the cost of a step next
 * to the floor's: Redis `INFO commandstats` (calls of every command, those run inside Lua scripts
 * included) and `INFO stats` (bytes received); NATS `/varz` on the monitoring port (messages and
 * bytes received from clients: publishes, acks and API requests alike).
 */
import Redis from 'ioredis';

/** A broker's cumulative counters at one moment. */
export interface BrokerCounters {
  /** Redis: command calls (all commands); NATS: messages received. */
  readonly commands: number;
  /** Redis: EVALSHA/EVAL calls (scripts: one round trip each); NATS: 0. */
  readonly scripts: number;
  /** Bytes the broker received from clients. */
  readonly bytesIn: number;
  /** Calls per command name (Redis only). */
  readonly byCommand: Readonly<Record<string, number>>;
}

/** The difference `after - before`, per command too. */
export function counterDelta(before: BrokerCounters, after: BrokerCounters): BrokerCounters {
  const byCommand: Record<string, number> = {};
  for (const [name, calls] of Object.entries(after.byCommand)) {
    const delta = calls - (before.byCommand[name] ?? 0);
    if (delta > 0) byCommand[name] = delta;
  }
  return {
    commands: after.commands - before.commands,
    scripts: after.scripts - before.scripts,
    bytesIn: after.bytesIn - before.bytesIn,
    byCommand,
  };
}

/** Reads a Redis server's counters (the INFO calls themselves are left out). */
export async function redisCounters(url: string): Promise<BrokerCounters> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    const [commandstats, stats] = await Promise.all([client.info('commandstats'), client.info('stats')]);
    const byCommand: Record<string, number> = {};
    let commands = 0;
    for (const match of commandstats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      const name = match[1] as string;
      const calls = Number(match[2]);
      if (name === 'info' || name === 'client|setname' || name === 'client|setinfo') continue;
      byCommand[name] = calls;
      commands += calls;
    }
    const bytesIn = Number(/^total_net_input_bytes:(\d+)/m.exec(stats)?.[1] ?? 0);
    return { commands, scripts: (byCommand['evalsha'] ?? 0) + (byCommand['eval'] ?? 0), bytesIn, byCommand };
  } finally {
    client.disconnect();
  }
}

/** Reads a nats-server's counters from its monitoring endpoint (`http://127.0.0.1:<port>`). */
export async function natsCounters(monitorUrl: string): Promise<BrokerCounters> {
  const res = await fetch(`${monitorUrl}/varz`);
  const varz = (await res.json()) as { in_msgs: number; in_bytes: number };
  return { commands: varz.in_msgs, scripts: 0, bytesIn: varz.in_bytes, byCommand: {} };
}
