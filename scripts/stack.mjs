#!/usr/bin/env node
// `pnpm stack`: the docker-compose topology as local processes, no Docker (what `temporal server
// start-dev` is to Temporal). A private redis-server (or nats-server with JetStream) in a temporary
// folder, the orchestrator, N worker-managers hosting the order example's workers, the
// metrics-collector and the event-monitor (once it is built), each started from its dist/ with the
// same environment variables as in docker-compose.yml, their log lines prefixed with their name.
// Ctrl-C (SIGINT) or SIGTERM drains the services, stops the broker and removes the folder.
//
//   pnpm stack [--backend redis|nats] [--workers N] [--grpc-port P] [--metrics-port P]
//              [--monitor-port P] [--monitor-grpc-port P] [--broker-port P] [--data-dir DIR] [--no-build]
//
// Variables of this shell reach the services (LOG_LEVEL, OTEL_*, MULTIAGENTS_VISIBILITY_TIMEOUT_MS, …),
// except the backend ones, which the stack sets. Exit codes: 0 after a clean stop, 1 when something
// could not start (a port in use, a broker or service that failed: nothing is left running), 2 on
// bad arguments.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const APPS = ['orchestrator', 'worker-manager', 'metrics-collector', 'event-monitor'];
const READY_TIMEOUT_MS = 90_000;
/** Longer than the worker-managers' default drain timeout (30 s), as compose's stop_grace_period. */
const SERVICE_STOP_TIMEOUT_MS = 45_000;
const BROKER_STOP_TIMEOUT_MS = 10_000;

const USAGE = `usage: pnpm stack [options]

  --backend redis|nats     broker to start privately (default redis)
  --workers N              worker-manager replicas (default 2)
  --grpc-port P            orchestrator gRPC API (default 50051, the CLI's default address)
  --metrics-port P         metrics-collector /metrics (default 9464)
  --monitor-port P         event-monitor dashboard, HTTP (default 8090)
  --monitor-grpc-port P    event-monitor gRPC API (default 50053)
  --broker-port P          broker port (default: a free port)
  --data-dir DIR           keep the broker's data in DIR (default: a temporary folder, removed at exit)
  --no-build               do not build first (dist/ must be current)
`;

class UsageError extends Error {}
class StartError extends Error {}

function parseArgs(argv) {
  const options = {
    backend: 'redis',
    workers: 2,
    grpcPort: 50051,
    metricsPort: 9464,
    monitorPort: 8090,
    monitorGrpcPort: 50053,
    brokerPort: undefined,
    dataDir: undefined,
    build: true,
  };
  const ports = {
    '--grpc-port': 'grpcPort',
    '--metrics-port': 'metricsPort',
    '--monitor-port': 'monitorPort',
    '--monitor-grpc-port': 'monitorGrpcPort',
    '--broker-port': 'brokerPort',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const next = argv[++i];
      if (next === undefined) throw new UsageError(`${arg} needs a value`);
      return next;
    };
    if (arg === '--') {
      continue; // `pnpm stack -- --workers 3` passes the separator on
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else if (arg === '--backend') {
      options.backend = value();
      if (!['redis', 'nats'].includes(options.backend)) {
        throw new UsageError(`--backend ${options.backend}: must be redis or nats`);
      }
    } else if (arg === '--workers') {
      const raw = value();
      options.workers = Number(raw);
      if (!Number.isInteger(options.workers) || options.workers < 0 || options.workers > 64) {
        throw new UsageError(`--workers ${raw}: must be an integer from 0 to 64`);
      }
    } else if (arg in ports) {
      const raw = value();
      const port = Number(raw);
      if (!Number.isInteger(port) || port < 1 || port > 65_535) {
        throw new UsageError(`${arg} ${raw}: must be a port number from 1 to 65535`);
      }
      options[ports[arg]] = port;
    } else if (arg === '--data-dir') {
      options.dataDir = resolve(value());
    } else if (arg === '--no-build') {
      options.build = false;
    } else {
      throw new UsageError(`unknown argument ${arg}`);
    }
  }
  return options;
}

// ------------------------------------------------------------------------------------------------
// Output: every line prefixed with its source; JSON log lines made readable on a terminal.

const COLORS = [36, 33, 35, 32, 34, 91, 92, 93, 94, 95, 96];
const LEVELS = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const tty = process.stdout.isTTY === true;
let prefixWidth = 14;

function paint(text, color) {
  return tty ? `\u001b[${color}m${text}\u001b[0m` : text;
}

function say(line) {
  process.stdout.write(`${paint('stack'.padEnd(prefixWidth), 1)} | ${line}\n`);
}

function humanize(line) {
  if (!tty || !line.startsWith('{')) return line;
  try {
    const { level, time, msg, pid: _pid, hostname: _host, service: _service, ...fields } = JSON.parse(line);
    const when = typeof time === 'string' ? time.slice(11, 19) : '';
    const extra = Object.entries(fields)
      .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
      .join(' ');
    return `${when} ${(LEVELS[level] ?? String(level)).padEnd(5)} ${msg ?? ''}${extra ? `  ${extra}` : ''}`;
  } catch {
    return line;
  }
}

function pipeLines(stream, name, color) {
  const lines = createInterface({ input: stream });
  lines.on('line', (line) => {
    process.stdout.write(`${paint(name.padEnd(prefixWidth), color)} | ${humanize(line)}\n`);
  });
}

// ------------------------------------------------------------------------------------------------
// Ports and processes.

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

function portFree(port) {
  return new Promise((resolveFree) => {
    const server = createServer();
    server.once('error', () => resolveFree(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolveFree(true)));
  });
}

function findBinary(name) {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

function sleep(ms) {
  return new Promise((done) => setTimeout(done, ms));
}

/** Resolves once a TCP connection to the port succeeds (the broker listens). */
async function waitForTcp(port, child, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new StartError(`${what} exited at start (see its lines above)`);
    }
    const connected = await new Promise((done) => {
      const socket = createConnection({ port, host: '127.0.0.1' });
      socket.once('connect', () => {
        socket.destroy();
        done(true);
      });
      socket.once('error', () => done(false));
    });
    if (connected) return;
    await sleep(100);
  }
  throw new StartError(`${what} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/** Resolves once GET /readyz answers 200. */
async function waitForReady(service, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (service.child.exitCode !== null || service.child.signalCode !== null) {
      throw new StartError(
        `${service.name} exited at start with ${service.child.exitCode ?? service.child.signalCode} (see its lines above)`,
      );
    }
    try {
      const response = await fetch(`http://127.0.0.1:${service.httpPort}/readyz`, {
        signal: AbortSignal.timeout(2000),
      });
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(200);
  }
  throw new StartError(`${service.name} was not ready within ${timeoutMs} ms`);
}

const children = [];
let colorIndex = 0;

function start(name, command, args, env) {
  // Its own process group: a Ctrl-C at the terminal reaches the stack only, which then stops the
  // services before the broker under them.
  const child = spawn(command, args, {
    cwd: ROOT,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const color = COLORS[colorIndex++ % COLORS.length];
  pipeLines(child.stdout, name, color);
  pipeLines(child.stderr, name, color);
  const entry = { name, child, exited: new Promise((done) => child.once('exit', done)), expected: false };
  child.once('exit', (code, signal) => {
    if (!entry.expected) say(`${name} (pid ${child.pid}) exited with ${signal ?? `code ${code}`}`);
  });
  children.push(entry);
  return entry;
}

async function stopOne(entry, timeoutMs) {
  const { child } = entry;
  entry.expected = true;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    say(`${entry.name} did not stop within ${timeoutMs} ms: killing it`);
    child.kill('SIGKILL');
  }, timeoutMs);
  await entry.exited;
  clearTimeout(timer);
}

// A crash of the stack itself must not leave the services running: kill what is left, synchronously.
process.on('exit', () => {
  for (const { child } of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

// ------------------------------------------------------------------------------------------------

async function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`pnpm stack: ${err.message}\n\n${USAGE}`);
    process.exit(2);
  }
  const monitorBuilt = existsSync(join(ROOT, 'apps', 'event-monitor', 'package.json'));

  // Ports first: one in use stops the stack before anything starts.
  const fixed = [
    [options.grpcPort, '--grpc-port', "the orchestrator's gRPC API"],
    [options.metricsPort, '--metrics-port', "the metrics-collector's /metrics"],
    ...(monitorBuilt
      ? [
          [options.monitorPort, '--monitor-port', "the event-monitor's dashboard"],
          [options.monitorGrpcPort, '--monitor-grpc-port', "the event-monitor's gRPC API"],
        ]
      : []),
    ...(options.brokerPort === undefined ? [] : [[options.brokerPort, '--broker-port', 'the broker']]),
  ];
  const seen = new Map();
  for (const [port, flag] of fixed) {
    if (seen.has(port)) throw new StartError(`port ${port} is given to both ${seen.get(port)} and ${flag}`);
    seen.set(port, flag);
  }
  for (const [port, flag, what] of fixed) {
    if (!(await portFree(port))) {
      throw new StartError(
        `port ${port} (${flag}, ${what}) is already in use: stop what uses it, or pass ${flag} <another port>`,
      );
    }
  }

  const brokerBinary = findBinary(options.backend === 'redis' ? 'redis-server' : 'nats-server');
  if (brokerBinary === undefined) {
    throw new StartError(
      `${options.backend === 'redis' ? 'redis-server' : 'nats-server'} is not installed ` +
        `(Debian: apt-get install -y ${options.backend === 'redis' ? 'redis-server' : 'nats-server'})`,
    );
  }

  if (options.build) {
    const projects = [
      ...APPS.filter((app) => existsSync(join(ROOT, 'apps', app, 'package.json'))).map(
        (app) => `@multiagents/${app}`,
      ),
      '@multiagents/cli',
      '@multiagents/example-order-processing',
    ];
    say(`building ${projects.join(' ')} …`);
    const build = spawnSync('bash', [join(ROOT, 'scripts', 'build-quiet.sh'), ...projects], {
      cwd: ROOT,
      stdio: 'inherit',
    });
    if (build.status !== 0) throw new StartError('the build failed (output above)');
  }
  for (const app of APPS) {
    if (app === 'event-monitor' && !monitorBuilt) continue;
    if (!existsSync(join(ROOT, 'apps', app, 'dist', 'main.js'))) {
      throw new StartError(`apps/${app}/dist/main.js is missing: run without --no-build`);
    }
  }

  const temporary = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'multiagents-stack-'));
  mkdirSync(dataDir, { recursive: true });
  const cleanup = () => {
    if (temporary) rmSync(dataDir, { recursive: true, force: true });
  };
  prefixWidth = Math.max(14, `worker-manager-${options.workers}`.length);

  const brokerPort = options.brokerPort ?? (await freePort());
  let broker;
  let backendEnv;
  if (options.backend === 'redis') {
    broker = start('redis', brokerBinary, [
      '--port',
      String(brokerPort),
      '--bind',
      '127.0.0.1',
      '--dir',
      dataDir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--save',
      '',
      '--daemonize',
      'no',
    ]);
    backendEnv = { MULTIAGENTS_BACKEND: 'redis', REDIS_URL: `redis://127.0.0.1:${brokerPort}` };
  } else {
    broker = start('nats', brokerBinary, [
      '-a',
      '127.0.0.1',
      '-p',
      String(brokerPort),
      '-js',
      '-sd',
      dataDir,
    ]);
    backendEnv = { MULTIAGENTS_BACKEND: 'nats', NATS_URL: `nats://127.0.0.1:${brokerPort}` };
  }

  const services = [];
  let stopping;
  const stopAll = async (why) => {
    if (stopping) return stopping;
    stopping = (async () => {
      say(`${why}: stopping the services, then the broker`);
      await Promise.all(services.map((service) => stopOne(service, SERVICE_STOP_TIMEOUT_MS)));
      await stopOne(broker, BROKER_STOP_TIMEOUT_MS);
      cleanup();
      say('stopped; nothing left running');
    })();
    return stopping;
  };
  let firstSignalAt;
  const onSignal = (signal) => {
    // `pnpm stack` and the terminal may both deliver one Ctrl-C: only a later one means "hurry".
    firstSignalAt ??= Date.now();
    if (Date.now() - firstSignalAt > 1000) {
      say(`${signal} again: killing everything now`);
      for (const { child } of children) child.kill('SIGKILL');
      cleanup();
      process.exit(130);
    }
    void stopAll(signal).then(() => process.exit(0));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    await waitForTcp(brokerPort, broker.child, options.backend, 10_000);

    // This shell's variables, less those the stack decides (per service or for all).
    const base = { ...process.env };
    for (const name of ['REDIS_URL', 'NATS_URL', 'MULTIAGENTS_WORKER_MODULES', 'GRPC_PORT', 'HTTP_PORT']) {
      delete base[name];
    }
    Object.assign(base, { MULTIAGENTS_PREFIX: process.env.MULTIAGENTS_PREFIX || 'multiagents' }, backendEnv);
    const workerModules =
      process.env.MULTIAGENTS_WORKER_MODULES ||
      join(ROOT, 'examples', 'order-processing', 'dist', 'service-workers.js');
    const definitions =
      process.env.MULTIAGENTS_DEFINITIONS ||
      join(ROOT, 'examples', 'order-processing', 'src', 'workflow.yaml');
    const launch = (name, app, env) => {
      const service = start(name, process.execPath, [join(ROOT, 'apps', app, 'dist', 'main.js')], {
        ...base,
        OTEL_SERVICE_NAME: app,
        ...env,
      });
      service.httpPort = Number(env.HTTP_PORT);
      service.grpcPort = env.GRPC_PORT === undefined ? undefined : Number(env.GRPC_PORT);
      services.push(service);
      return service;
    };

    // The orchestrator first: it registers the definitions the others' runs need.
    const orchestrator = launch('orchestrator', 'orchestrator', {
      GRPC_PORT: String(options.grpcPort),
      HTTP_PORT: String(await freePort()),
      MULTIAGENTS_DEFINITIONS: definitions,
    });
    await waitForReady(orchestrator, READY_TIMEOUT_MS);
    for (let i = 1; i <= options.workers; i++) {
      launch(`worker-manager-${i}`, 'worker-manager', {
        GRPC_PORT: String(await freePort()),
        HTTP_PORT: String(await freePort()),
        MULTIAGENTS_WORKER_MODULES: workerModules,
      });
    }
    launch('metrics-collector', 'metrics-collector', { HTTP_PORT: String(options.metricsPort) });
    if (monitorBuilt) {
      launch('event-monitor', 'event-monitor', {
        GRPC_PORT: String(options.monitorGrpcPort),
        HTTP_PORT: String(options.monitorPort),
        // The dashboard's actions (cancel, signal, retry-step…) go to the orchestrator.
        MULTIAGENTS_ORCHESTRATOR_ADDRESS: `127.0.0.1:${options.grpcPort}`,
      });
    }
    await Promise.all(services.map((service) => waitForReady(service, READY_TIMEOUT_MS)));

    const brokerUrl = backendEnv.REDIS_URL ?? backendEnv.NATS_URL;
    const rows = [
      ['orchestrator gRPC', `127.0.0.1:${options.grpcPort}`],
      ['metrics', `http://127.0.0.1:${options.metricsPort}/metrics`],
      monitorBuilt
        ? [
            'dashboard',
            `http://127.0.0.1:${options.monitorPort}/  (event-monitor gRPC 127.0.0.1:${options.monitorGrpcPort})`,
          ]
        : ['event monitor', 'not built in this checkout (apps/event-monitor): skipped'],
      [options.backend, `${brokerUrl}  (data in ${dataDir}${temporary ? ', removed at exit' : ''})`],
      ...services.map((service) => [
        service.name,
        `pid ${service.child.pid}, http://127.0.0.1:${service.httpPort}/readyz` +
          (service.grpcPort === undefined ? '' : `, gRPC 127.0.0.1:${service.grpcPort}`),
      ]),
    ];
    const address = options.grpcPort === 50051 ? '' : `MULTIAGENTS_ADDRESS=127.0.0.1:${options.grpcPort} `;
    say(`MultiAgents stack ready: backend ${options.backend}, ${options.workers} worker-manager(s)`);
    for (const [label, value] of rows) say(`  ${label.padEnd(prefixWidth + 4)} ${value}`);
    say('try:');
    say(`  ${address}pnpm multiagents start order_processing --input '{"orderId":"o-1","total":42}' --watch`);
    say('Ctrl-C stops everything');
  } catch (err) {
    await stopAll('could not start');
    throw err;
  }
}

main().catch((err) => {
  if (err instanceof StartError) {
    process.stderr.write(`pnpm stack: ${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`pnpm stack: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
