import type { Redis } from 'ioredis';

/** Calls per command name, plus the server's network byte counters. */
export interface ServerCounters {
  readonly calls: Readonly<Record<string, number>>;
  readonly netInputBytes: number;
  readonly netOutputBytes: number;
}

/** What INFO commandstats and INFO stats say now. */
export async function serverCounters(client: Redis): Promise<ServerCounters> {
  const commandstats = await client.info('commandstats');
  const calls: Record<string, number> = {};
  for (const match of commandstats.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm))
    calls[match[1] as string] = Number(match[2]);
  const stats = await client.info('stats');
  const stat = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(stats)?.[1] ?? 0);
  return {
    calls,
    netInputBytes: stat('total_net_input_bytes'),
    netOutputBytes: stat('total_net_output_bytes'),
  };
}

/** The difference between two readings; the INFO calls themselves are left out. */
export function counterDelta(
  before: ServerCounters,
  after: ServerCounters,
): ServerCounters & { total: number } {
  const calls: Record<string, number> = {};
  let total = 0;
  for (const [name, n] of Object.entries(after.calls)) {
    const delta = n - (before.calls[name] ?? 0);
    if (delta <= 0 || name === 'info') continue;
    calls[name] = delta;
    total += delta;
  }
  return {
    calls,
    total,
    netInputBytes: after.netInputBytes - before.netInputBytes,
    netOutputBytes: after.netOutputBytes - before.netOutputBytes,
  };
}
