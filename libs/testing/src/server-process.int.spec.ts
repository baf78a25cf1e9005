import { createConnection } from 'node:net';
import { startNatsServer, startRedisServer } from './server-process';

async function ping(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ port, host: '127.0.0.1' }, () => socket.write(command));
    socket.once('data', (chunk) => {
      socket.destroy();
      resolve(chunk.toString());
    });
    socket.once('error', reject);
  });
}

describe('private servers', () => {
  it('starts, kills, restarts and stops a redis-server of its own', async () => {
    const redis = await startRedisServer({ appendOnly: true });
    try {
      expect(redis.port).not.toBe(6379);
      expect(await ping(redis.port, 'PING\r\n')).toBe('+PONG\r\n');
      redis.kill('SIGKILL');
      await redis.restart();
      expect(await ping(redis.port, 'PING\r\n')).toBe('+PONG\r\n');
    } finally {
      await redis.stop();
    }
  });

  it('starts a nats-server with JetStream of its own', async () => {
    const nats = await startNatsServer();
    try {
      expect(nats.port).not.toBe(4222);
      expect(await ping(nats.port, '')).toMatch(/^INFO .*"jetstream":true/);
    } finally {
      await nats.stop();
    }
  });
});
