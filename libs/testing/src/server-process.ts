import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
  /** Resolves once the process has exited (at once when it is not running). */
  exited(): Promise<void>;
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

/**
 * Ports handed out by {@link freePort} come from below the kernel's ephemeral range (32768–60999
 * on Linux), where `listen(0)` and every outgoing connection take theirs: a port reserved for a
 * server that binds it a moment later, or that restarts on it after a kill, cannot be taken by
 * another socket in between (services started with GRPC_PORT=0, a client reconnecting). Each Jest
 * worker hands out ports from its own block, so two test files running at once never pick the same
 * one; within a process, a cursor never hands out a port twice until its block wraps around.
 * Redis Cluster nodes get their bus port from here too (see `--cluster-port`), not port + 10000.
 */
const PORT_BASE = 12_000;
const PORT_BLOCK = 1_000;
const PORT_BLOCKS = 16;
const block = (Number(process.env['JEST_WORKER_ID'] ?? process.pid) - 1) % PORT_BLOCKS;
let portCursor = Math.floor(Math.random() * PORT_BLOCK);

/** Whether a loopback port can be bound right now. */
async function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A free loopback port of this process's block (see above); the caller binds it. */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < PORT_BLOCK; tries++) {
    const port = PORT_BASE + block * PORT_BLOCK + (portCursor++ % PORT_BLOCK);
    if (await canBind(port)) return port;
  }
  throw new Error(
    `no free port in ${PORT_BASE + block * PORT_BLOCK}–${PORT_BASE + (block + 1) * PORT_BLOCK - 1}`,
  );
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

/**
 * Sends one inline command and resolves with the first reply chunk ('' if the connection fails):
 * enough for a readiness probe.
 */
async function probe(port: number, command: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' }, () => socket.write(command));
    socket.once('data', (chunk: Buffer) => {
      socket.destroy();
      resolve(chunk.toString());
    });
    socket.once('error', () => resolve(''));
  });
}

/** Waits until `ready(port)` says so (a server can accept connections before it serves them). */
async function waitForReady(
  port: number,
  child: ChildProcess,
  ready: (port: number) => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`server exited with code ${child.exitCode} before it was ready`);
    if (await ready(port)) return;
    if (Date.now() > deadline) throw new Error(`server on ${port} was not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts `command args` (built from port and dir) and waits until it accepts connections, and
 * then until `ready` (when given) says it serves them — after every restart too.
 */
export async function startServerProcess(
  name: string,
  command: string,
  args: (port: number, dir: string) => string[],
  url: (port: number) => string,
  ready?: (port: number) => Promise<boolean>,
  fixedPort?: number,
): Promise<ServerProcess> {
  const port = fixedPort ?? (await freePort());
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
      if (ready) await waitForReady(port, proc, ready, 10_000);
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
    exited,
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
  /** Listen on this port (a test that starts the server after a service configured for it). */
  readonly port?: number;
  /** Require this password of the default user (`redis://:<password>@…`). */
  readonly password?: string;
  /** Append-only file on (off by default). */
  readonly appendOnly?: boolean;
  /** With the AOF: `everysec` (a production default: may lose the last second) or `always`. */
  readonly appendFsync?: 'everysec' | 'always';
  /**
   * More arguments (config directives), for example ACL users:
   * `['--user', 'default off', '--user', 'saga on >secret ~saga:* +@all']`.
   */
  readonly args?: readonly string[];
}

/**
 * A private redis-server on a free loopback port in a temp dir, never the machine's shared one.
 * It is handed over (and back after `restart()`) once it answers PING: with an append-only file
 * Redis accepts connections while it still loads the dataset, and answers `-LOADING` meanwhile.
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
      ...(options.password === undefined ? [] : ['--requirepass', options.password]),
      ...(options.args ?? []),
    ],
    (port) =>
      options.password === undefined
        ? `redis://127.0.0.1:${port}`
        : `redis://:${encodeURIComponent(options.password)}@127.0.0.1:${port}`,
    async (port) => {
      const reply = await probe(port, 'PING\r\n');
      // With a password, an unauthenticated PING answers NOAUTH: the server is up all the same.
      return reply === '+PONG\r\n' || reply.startsWith('-NOAUTH');
    },
    options.port,
  );
}

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Listen on this port (a test that starts the server after a service configured for it). */
  readonly port?: number;
  /** Also serve the monitoring endpoints (`/varz`, `/jsz`, …) on a free loopback port. */
  readonly monitor?: boolean;
  /** Enable JetStream (default true; false gives a server that refuses every JetStream call). */
  readonly jetStream?: boolean;
  /** Require this user and password of every client (`nats://<user>:<password>@…`). */
  readonly user?: string;
  readonly password?: string;
  /**
   * A configuration file's text (`authorization { users = [...] }` with per-user permissions,
   * `tls { ... }`), written into the server's directory and passed with `-c`; the port, address
   * and store directory still come from the command line.
   */
  readonly config?: string;
}

/** A private nats-server; `monitorUrl` is set when it was started with `monitor: true`. */
export interface NatsServerProcess extends ServerProcess {
  /** `http://127.0.0.1:<port>`: GET `${monitorUrl}/varz` for the server's message and byte counters. */
  readonly monitorUrl: string | undefined;
}

/**
 * A private nats-server with JetStream on a free loopback port, its store in a temp dir (kept
 * across kill and restart), and with `monitor: true` its monitoring port (the same after a restart).
 *
 * @example
 * const nats = await startNatsServer({ monitor: true });
 * const varz = await (await fetch(`${nats.monitorUrl}/varz`)).json();
 */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServerProcess> {
  const monitorPort = options.monitor ? await freePort() : undefined;
  const server = await startServerProcess(
    'nats',
    'nats-server',
    (port, dir) => [
      ...(options.config === undefined ? [] : ['-c', writeConfig(dir, options.config)]),
      '-a',
      '127.0.0.1',
      '-p',
      String(port),
      ...(options.jetStream === false ? [] : ['-js', '-sd', dir]),
      ...(monitorPort === undefined ? [] : ['-m', String(monitorPort)]),
      ...(options.user === undefined ? [] : ['--user', options.user, '--pass', options.password ?? '']),
    ],
    (port) =>
      options.user === undefined
        ? `nats://127.0.0.1:${port}`
        : `nats://${encodeURIComponent(options.user)}:${encodeURIComponent(options.password ?? '')}@127.0.0.1:${port}`,
    undefined,
    options.port,
  );
  return { ...server, monitorUrl: monitorPort === undefined ? undefined : `http://127.0.0.1:${monitorPort}` };
}

function writeConfig(dir: string, text: string): string {
  const path = join(dir, 'nats-server.conf');
  writeFileSync(path, text);
  return path;
}
