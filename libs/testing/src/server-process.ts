import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A private server process started for a test: its own port and data directory. */
export interface ServerProcess {
  readonly port: number;
  readonly url: string;
  /** The server's data directory (AOF, JetStream store); survives kill and restart. */
  readonly dir: string;
  readonly pid: () => number | undefined;
  /** Sends a signal (SIGKILL for crash tests, SIGSTOP/SIGCONT for pauses). */
  kill(signal?: NodeJS.Signals): void;
  /** Starts the server again on the same port and directory (after a kill). */
  restart(): Promise<void>;
  /** Stops the server and removes its directory. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();

/**
 * Remembers a child process started for a test, so it dies with the test process: on a normal
 * exit, and when the runner is interrupted or killed with SIGTERM/SIGINT (otherwise servers and
 * services would outlive the test run).
 */
export function trackChild(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
}

function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
}
process.once('exit', killAll);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(128 + (signal === 'SIGTERM' ? 15 : 2));
  });
}

/** A free loopback port (the OS picks it; there is a small window before the server binds it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`server exited with code ${child.exitCode} before listening`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`server did not listen on ${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Finds a server binary on PATH, or in the sbin folders where Debian installs some of them. */
function binary(name: string): string {
  const dirs = [...(process.env['PATH'] ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) if (dir && existsSync(join(dir, name))) return join(dir, name);
  throw new Error(`${name} not found on PATH or in /usr/sbin: install it (apt-get install -y ${name})`);
}

/** Starts `command args` (built from port and dir) and waits until it accepts connections. */
export async function startServerProcess(
  name: string,
  command: string,
  args: (port: number, dir: string) => string[],
  url: (port: number) => string,
): Promise<ServerProcess> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), `${name}-`));
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    const output: string[] = [];
    const proc = spawn(binary(command), args(port, dir), { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    proc.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    trackChild(proc);
    child = proc;
    try {
      await waitForPort(port, proc, 10_000);
    } catch (err) {
      proc.kill('SIGKILL');
      throw new Error(`${name}: ${(err as Error).message}\n${output.join('').slice(-2_000)}`);
    }
  };
  const exited = async (): Promise<void> => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  };
  await launch();
  return {
    port,
    url: url(port),
    dir,
    pid: () => child?.pid,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      child?.kill(signal);
    },
    async restart() {
      await exited();
      await launch();
    },
    async stop() {
      child?.kill('SIGKILL');
      await exited();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Options of {@link startRedisServer}. */
export interface RedisServerOptions {
  /** Append-only file on (off by default). */
  readonly appendOnly?: boolean;
  /** With the AOF: `everysec` (a production default: may lose the last second) or `always`. */
  readonly appendFsync?: 'everysec' | 'always';
}

/**
 * A private redis-server on a free loopback port in a temp dir, never the machine's shared one.
 *
 * @example
 * const redis = await startRedisServer();
 * const bus = new RedisEventBus({ url: redis.url, prefix: 'test-1' });
 * afterAll(() => redis.stop());
 */
export function startRedisServer(options: RedisServerOptions = {}): Promise<ServerProcess> {
  return startServerProcess(
    'redis',
    'redis-server',
    (port, dir) => [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      options.appendOnly ? 'yes' : 'no',
      '--appendfsync',
      options.appendFsync ?? 'everysec',
      '--protected-mode',
      'no',
    ],
    (port) => `redis://127.0.0.1:${port}`,
  );
}

/**
 * A private nats-server with JetStream on a free loopback port, its store in a temp dir (kept
 * across kill and restart).
 */
export function startNatsServer(): Promise<ServerProcess> {
  return startServerProcess(
    'nats',
    'nats-server',
    (port, dir) => ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir],
    (port) => `nats://127.0.0.1:${port}`,
  );
}
