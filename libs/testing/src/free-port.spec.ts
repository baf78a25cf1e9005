import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { freePort } from './server-process';

/** The first port of the kernel's ephemeral range (where listen(0) and connect() take theirs). */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    return 32_768;
  }
}

async function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

describe('freePort', () => {
  it('hands out distinct ports below the ephemeral range, each one bindable', async () => {
    const ports = await Promise.all(Array.from({ length: 50 }, () => freePort()));
    expect(new Set(ports).size).toBe(50);
    for (const port of ports) expect(port).toBeLessThan(ephemeralLow());
    const server = await listen(ports[0] ?? 0);
    await new Promise((r) => server.close(r));
  });

  it('skips a port another socket holds', async () => {
    // The block's next ports are held: freePort must pass over them.
    const next = await freePort();
    const held = await Promise.all([next + 1, next + 2].map((port) => listen(port).catch(() => undefined)));
    try {
      const port = await freePort();
      expect([next + 1, next + 2]).not.toContain(port);
      await new Promise<void>((resolve, reject) => {
        const server = createServer();
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
      });
    } finally {
      for (const server of held) if (server) await new Promise((r) => server.close(r));
    }
  });
});
