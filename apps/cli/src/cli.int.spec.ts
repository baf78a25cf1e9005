/**
 * `multiagents` as a user runs it: a child process per command, against the orchestrator service
 * in the embedded mode (its own child process, hosting the order saga's workers), over gRPC.
 * Both run from their TypeScript sources (test/register-ts.cjs), so no build is needed and a
 * stale dist is never what gets tested.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { RunState, type Run } from '@multiagents/contracts';
import { createTestCa, type TestCa } from '@multiagents/testing';
import { FLAKY_WORKFLOW_YAML } from './test/flaky-workers';
import { SignJWT } from 'jose';

jest.setTimeout(60_000);

const ROOT = resolve(__dirname, '..', '..', '..');
const NODE_ARGS = ['--conditions=development', '-r', join(__dirname, 'test', 'register-ts.cjs')];
const CLI = join(__dirname, 'main.ts');

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI with `args`; bounded so a hung command fails the test instead of hanging it. */
function cli(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<Result> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, CLI, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`multiagents ${args.join(' ')} did not finish in ${timeoutMs} ms\n${stdout}\n${stderr}`),
      );
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

/** Starts the orchestrator service on a free port; resolves once its gRPC API listens. */
function startOrchestrator(
  extraEnv: Record<string, string> = {},
): Promise<{ child: ChildProcess; address: string; log: () => string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, join(ROOT, 'apps/orchestrator/src/main.ts')], {
      cwd: ROOT,
      env: {
        ...process.env,
        MULTIAGENTS_BACKEND: 'memory',
        MULTIAGENTS_WORKER_MODULES: [
          join(ROOT, 'examples/order-processing/src/service-workers.ts'),
          join(__dirname, 'test', 'flaky-workers.ts'),
        ].join(','),
        MULTIAGENTS_DEFINITIONS: join(ROOT, 'examples/order-processing/src/workflow.yaml'),
        GRPC_PORT: '0',
        GRPC_HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        ...extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Never outlive the test run, whatever happens to it.
    process.once('exit', () => child.kill('SIGKILL'));
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`orchestrator did not start in time:\n${output}`));
    }, 30_000);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      const match = /"port":(\d+)[^\n]*"msg":"gRPC control plane listening"/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolvePromise({ child, address: `127.0.0.1:${match[1]}`, log: () => output });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`orchestrator exited with ${code}:\n${output}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

describe('multiagents CLI (child processes, embedded-mode orchestrator)', () => {
  let orchestrator: { child: ChildProcess; address: string; log: () => string };
  let dir: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'multiagents-cli-'));
    orchestrator = await startOrchestrator();
    // The address from the environment, as a user would set it once per shell.
    env = { MULTIAGENTS_ADDRESS: orchestrator.address };
  });

  afterAll(async () => {
    if (orchestrator) await stop(orchestrator.child);
    rmSync(dir, { recursive: true, force: true });
  });

  it('start --watch follows a completing run to its end, one line per change, exit 0', async () => {
    const result = await cli(
      ['start', 'order_processing', '--input', '{"orderId":"c-1","total":5}', '--watch'],
      env,
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^started run [0-9a-f-]{36} of order_processing$/);
    expect(result.stdout).toMatch(/ship_order completed/);
    expect(lines.at(-1)).toMatch(/^run [0-9a-f-]{36} ended completed in /);
    // In the order it happened, however late the watch began: the run ends after its last step.
    const at = (pattern: RegExp): number => lines.findIndex((line) => pattern.test(line));
    expect(at(/reserve_inventory completed/)).toBeLessThan(at(/charge_payment completed/));
    expect(at(/charge_payment completed/)).toBeLessThan(at(/ship_order completed/));
    expect(at(/ship_order completed/)).toBeLessThan(at(/ run completed$/));
    expect(at(/ run completed$/)).toBe(lines.length - 2);
  });

  it('start --watch on a compensating run shows the failure and the undos and exits 5; get and list --json show it', async () => {
    const inputFile = join(dir, 'order.json');
    writeFileSync(inputFile, JSON.stringify({ orderId: 'c-2', total: 7, failShipping: true }));
    const started = await cli(
      ['start', 'order_processing', '--input', `@${inputFile}`, '--idempotency-key', 'cli-c-2', '--watch'],
      env,
    );
    expect(started.code).toBe(5);
    const out = started.stdout;
    const txId = /^started run ([0-9a-f-]{36})/.exec(out)?.[1] ?? '';
    expect(txId).not.toBe('');
    // The run may be over before the watch starts (it takes a few ms): then the first state is
    // already the last, and still names the failure and both undos.
    expect(out).toMatch(/compensat(ing|ed) — CARRIER_REFUSED: carrier refused order c-2/);
    expect(out).toMatch(/undo charge_payment completed/);
    expect(out).toMatch(/undo reserve_inventory completed/);
    expect(out).toMatch(/ended compensated/);
    const lines = out.trim().split('\n');
    const at = (pattern: RegExp): number => lines.findIndex((line) => pattern.test(line));
    expect(at(/ship_order failed/)).toBeGreaterThan(0);
    expect(at(/ship_order failed/)).toBeLessThan(at(/undo charge_payment completed/));
    expect(at(/undo charge_payment completed/)).toBeLessThan(at(/undo reserve_inventory completed/));
    expect(at(/undo reserve_inventory completed/)).toBeLessThan(at(/ run compensated — /));

    const get = await cli(['get', txId], env);
    expect(get.code).toBe(0);
    expect(get.stdout).toMatch(new RegExp(`^run +${txId}$`, 'm'));
    expect(get.stdout).toMatch(/^state +compensated$/m);
    expect(get.stdout).toMatch(/^idempotency key +cli-c-2$/m);
    expect(get.stdout).toMatch(/^charge_payment +compensated +1 +\d+ ms +completed/m);
    expect(get.stdout).toMatch(/^ship_order +failed +1 .*CARRIER_REFUSED/m);

    const json = await cli(['--json', 'get', txId], env);
    const run = JSON.parse(json.stdout) as Run;
    // Undone newest first: the refund started no later than the release.
    expect(run.steps['charge_payment']?.compensation?.startedAt).toBeLessThanOrEqual(
      run.steps['reserve_inventory']?.compensation?.startedAt ?? 0,
    );

    const list = await cli(
      ['list', '--json', '--workflow', 'order_processing', '--state', 'compensated'],
      env,
    );
    expect(list.code).toBe(0);
    const page = JSON.parse(list.stdout) as { runs: Run[] };
    expect(page.runs.map((run) => run.txId)).toContain(txId);
    expect(page.runs.every((run) => run.state === RunState.Compensated)).toBe(true);
  });

  it('registers a definition file, then cancels a waiting run', async () => {
    const file = join(dir, 'approval.yaml');
    writeFileSync(
      file,
      [
        'id: approval',
        'version: 1',
        'steps:',
        '  - name: reserve_inventory',
        '    worker: inventory.reserve',
        '    compensation: inventory.release',
        '  - name: approve',
        '    kind: wait',
        '    signal: approved',
        '',
      ].join('\n'),
    );
    const registered = await cli(['workflows', 'register', file], env);
    expect(registered).toMatchObject({ code: 0, stdout: 'registered approval v1\n' });
    const listed = await cli(['workflows', 'list'], env);
    expect(listed.stdout).toMatch(/^approval +1 +1/m);

    const start = await cli(['--json', 'start', 'approval', '--input', '{"orderId":"c-3"}'], env);
    expect(start.code).toBe(0);
    const { txId } = JSON.parse(start.stdout) as { txId: string };
    const cancel = await cli(['cancel', txId, '--reason', 'customer called', '--watch'], env);
    expect(cancel.stderr).toBe('');
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toMatch(/^cancel requested; run [0-9a-f-]{36} is (cancelling|cancelled)$/m);
    expect(cancel.stdout).toMatch(/undo reserve_inventory completed/);
    const get = await cli(['--json', 'get', txId], env);
    expect((JSON.parse(get.stdout) as Run).state).toBe(RunState.Cancelled);
  });

  it('exits with distinct codes for not found, conflicts, usage errors and an unreachable server', async () => {
    const notFound = await cli(['get', 'no-such-run'], env);
    expect(notFound).toMatchObject({ code: 3, stdout: '' });
    expect(notFound.stderr).toBe('error (NOT_FOUND): run no-such-run not found\n');

    const json = await cli(['--json', 'get', 'no-such-run'], env);
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stderr)).toEqual({
      error: { code: 'NOT_FOUND', message: 'run no-such-run not found', details: { txId: 'no-such-run' } },
    });

    const done = await cli(['--json', 'list', '--state', 'completed', '--limit', '1'], env);
    const completed = (JSON.parse(done.stdout) as { runs: Run[] }).runs[0];
    expect(completed).toBeDefined();
    const conflict = await cli(['cancel', completed?.txId ?? ''], env);
    expect(conflict.code).toBe(4);
    expect(conflict.stderr).toMatch(/FAILED_PRECONDITION.*is completed/);

    const badInput = await cli(['start', 'order_processing', '--input', '{oops'], env);
    expect(badInput.code).toBe(2);
    expect(badInput.stderr).toMatch(/--input: not valid JSON/);

    const invalid = join(dir, 'invalid.yaml');
    writeFileSync(
      invalid,
      'id: broken\nversion: 0\nsteps:\n  - name: a\n    worker: x\n  - name: a\n    worker: y\n',
    );
    const rejected = await cli(['workflows', 'register', invalid], env);
    expect(rejected.code).toBe(2);
    expect(rejected.stderr).toMatch(/version must be an integer >= 1/);
    expect(rejected.stderr).toMatch(/duplicate step name/);

    const usage = await cli(['list', '--state', 'sleepy'], env);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/sleepy/);

    const down = await cli(['--address', '127.0.0.1:1', '--timeout', '2000', 'get', 'x'], env);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(
      /^error \(UNAVAILABLE\): server at 127\.0\.0\.1:1 unavailable: connect ECONNREFUSED 127\.0\.0\.1:1$/m,
    );
    expect(down.stderr).toMatch(/^ {2}tried 127\.0\.0\.1:1 \(from --address\)/m);
    expect(down.stderr).toMatch(/--address <host:port> or MULTIAGENTS_ADDRESS=<host:port>/);
    expect(down.stderr).not.toMatch(/Resolution note/);
  });

  it('names the address from MULTIAGENTS_ADDRESS when nothing listens there, in text and in JSON', async () => {
    const text = await cli(['--timeout', '2000', 'workflows', 'list'], {
      MULTIAGENTS_ADDRESS: '127.0.0.1:1',
    });
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/^ {2}tried 127\.0\.0\.1:1 \(from MULTIAGENTS_ADDRESS\)/m);
    const json = await cli(['--json', '--timeout', '2000', 'get', 'x'], {
      MULTIAGENTS_ADDRESS: '127.0.0.1:1',
    });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stderr)).toMatchObject({
      error: {
        code: 'UNAVAILABLE',
        details: {
          address: '127.0.0.1:1',
          addressFrom: 'MULTIAGENTS_ADDRESS',
          hint: expect.stringMatching(/--address/),
        },
      },
    });
  });

  it("shows a retried attempt's error, the failed undo's error, and a skipped undo, in order", async () => {
    const file = join(dir, 'flaky.yaml');
    writeFileSync(file, FLAKY_WORKFLOW_YAML);
    expect((await cli(['workflows', 'register', file], env)).code).toBe(0);

    const started = await cli(['start', 'flaky_order', '--watch'], env);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(5);
    const txId = /^started run ([0-9a-f-]{36})/.exec(started.stdout)?.[1] ?? '';
    const lines = started.stdout.trim().split('\n');
    const at = (pattern: RegExp): number => lines.findIndex((line) => pattern.test(line));
    const order = [
      /charge_payment retrying \(attempt 1 failed, .*NETWORK_HICCUP: card network hiccup\)/,
      /charge_payment completed \(attempt 2, /,
      /ship_order failed \(attempt 1, .*CARRIER_REFUSED: no carrier\)/,
      /undo charge_payment completed/,
      /undo reserve_inventory failed \(attempt 1, .*RELEASE_DOWN: warehouse offline\)/,
      / run compensation_failed — CARRIER_REFUSED: no carrier$/,
      /^run [0-9a-f-]{36} ended compensation_failed in /,
    ].map(at);
    // Every line there, in this order, the run's end last (the output is in the message on failure).
    expect({ order, stdout: started.stdout }).toEqual({
      order: [...order].sort((a, b) => a - b).map((index) => Math.max(index, 1)),
      stdout: started.stdout,
    });
    expect(order.at(-1)).toBe(lines.length - 1);

    const failed = await cli(['get', txId], env);
    expect(failed.code).toBe(0);
    expect(failed.stdout).toMatch(/^state +compensation_failed$/m);
    expect(failed.stdout).toMatch(/^charge_payment +1 +failed .*NETWORK_HICCUP: card network hiccup$/m);
    expect(failed.stdout).toMatch(/^ship_order +1 +failed .*CARRIER_REFUSED: no carrier$/m);
    expect(failed.stdout).toMatch(/^undo reserve_inventory +1 +failed .*RELEASE_DOWN: warehouse offline$/m);

    const skipped = await cli(['skip-step', txId, 'reserve_inventory'], env);
    expect(skipped.code).toBe(0);
    const watched = await cli(['watch', txId], env);
    expect(watched.code).toBe(5);
    expect(watched.stdout).toMatch(
      /undo reserve_inventory skipped by an operator: reserve_inventory was not undone\n.* run compensated — .*\(not undone: reserve_inventory\)\n/,
    );
    expect(watched.stdout).toMatch(
      /ended compensated in .*; not undone \(an operator skipped the failed undo\): reserve_inventory\n$/,
    );
    const get = await cli(['get', txId], env);
    expect(get.stdout).toMatch(
      /^state +compensated \(not undone: an operator skipped the failed undo of reserve_inventory\)$/m,
    );
    expect(get.stdout).toMatch(/^reserve_inventory +compensation_failed .*skipped by an operator/m);
    const json = JSON.parse((await cli(['--json', 'get', txId], env)).stdout) as Run;
    expect(json.steps['reserve_inventory']?.compensation?.status).toBe('skipped');
  });

  it('lists the hosted workers', async () => {
    const result = await cli(['workers', 'list', '--json'], env);
    expect(result.code).toBe(0);
    const list = JSON.parse(result.stdout) as {
      workers: { name: string; inFlight: number; lingering: number }[];
      draining: boolean;
    };
    expect(list.draining).toBe(false);
    // No handler outlived its attempt: every worker says so, beside its attempts in flight.
    expect(list.workers.every((w) => w.lingering === 0 && w.inFlight >= 0)).toBe(true);
    expect(list.workers.map((w) => w.name)).toEqual([
      'inventory.reserve',
      'inventory.release',
      'payment.charge',
      'payment.refund',
      'shipping.ship',
      'flaky.reserve',
      'flaky.release',
      'flaky.charge',
      'flaky.refund',
      'flaky.ship',
    ]);
  });
});

describe('multiagents CLI against a hardened orchestrator (TLS and JWT from the environment)', () => {
  const secret = 'a-test-secret-of-at-least-32-bytes!!';
  let orchestrator: { child: ChildProcess; address: string; log: () => string };
  let dir: string;
  let ca: TestCa;

  const jwt = (roles: string[], expiresIn = '5m'): Promise<string> =>
    new SignJWT({ roles })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('cli-user')
      .setAudience('multiagents')
      .setExpirationTime(expiresIn)
      .sign(Buffer.from(secret));

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'multiagents-cli-tls-'));
    ca = createTestCa(dir, 'cli-ca');
    const server = ca.server();
    orchestrator = await startOrchestrator({
      MULTIAGENTS_TLS_CERT: server.certFile,
      MULTIAGENTS_TLS_KEY: server.keyFile,
      MULTIAGENTS_AUTH_JWT_SECRET: secret,
      MULTIAGENTS_AUTH_JWT_AUDIENCE: 'multiagents',
    });
  });

  afterAll(async () => {
    if (orchestrator) await stop(orchestrator.child);
    rmSync(dir, { recursive: true, force: true });
  });

  it('works with --tls-ca and MULTIAGENTS_TOKEN; refuses no token (UNAUTHENTICATED) and a low role (PERMISSION_DENIED)', async () => {
    // By name: Node warns (DEP0123) when TLS is asked to check a server name that is an IP address.
    const address = orchestrator.address.replace('127.0.0.1', 'localhost');
    const env = { MULTIAGENTS_ADDRESS: address, MULTIAGENTS_TLS_CA: ca.certFile };
    const listed = await cli(['workflows', 'list', '--json'], {
      ...env,
      MULTIAGENTS_TOKEN: await jwt(['reader']),
    });
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ id: 'order_processing' })]);

    const anonymous = await cli(['workflows', 'list'], env);
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toMatch(/UNAUTHENTICATED/);

    const reader = await cli(['start', 'order_processing', '--token', await jwt(['reader'])], env);
    expect(reader.code).toBe(1);
    expect(reader.stderr).toMatch(/PERMISSION_DENIED/);

    const operator = await cli(
      [
        'start',
        'order_processing',
        '--input',
        '{"orderId":"tls-1","total":1}',
        '--json',
        '--tls-ca',
        ca.certFile,
      ],
      {
        MULTIAGENTS_ADDRESS: address,
        MULTIAGENTS_TOKEN: await jwt(['operator']),
      },
    );
    expect(operator.code).toBe(0);
    // A plaintext CLI cannot talk to the TLS port at all.
    const plaintext = await cli(['workflows', 'list', '--timeout', '2000'], {
      MULTIAGENTS_ADDRESS: orchestrator.address,
      MULTIAGENTS_TOKEN: await jwt(['reader']),
    });
    expect(plaintext.code).toBe(1);
    expect(plaintext.stderr).toMatch(/UNAVAILABLE/);
    // The service said loudly what it serves, and no token reached its log.
    expect(orchestrator.log()).toMatch(/"tls":"server","auth":"on"/);
    expect(orchestrator.log()).not.toMatch(/eyJ/);
  });

  it('a missing --tls-ca file is a usage error', async () => {
    const result = await cli(['workflows', 'list', '--tls-ca', join(dir, 'missing.pem')], {
      MULTIAGENTS_ADDRESS: orchestrator.address,
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--tls-ca .*missing\.pem: ENOENT/);
  });
});
