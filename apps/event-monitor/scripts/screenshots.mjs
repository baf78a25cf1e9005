#!/usr/bin/env node
// Takes the dashboard screenshots in docs/images/ from a live `pnpm stack`: a private Redis, the
// orchestrator, two worker-managers, the metrics-collector and the event-monitor; a few orders
// (some compensated, one waiting for approval) started through the CLI; then Debian's chromium,
// headless through playwright-core, opens the runs page, a compensated run's timeline, the workers
// and the stuck runs at 1280×800. Run it after `pnpm build`:
//
//   node apps/event-monitor/scripts/screenshots.mjs [--out docs/images]
//
// Nothing is downloaded. Everything it starts is stopped when it ends, also on failure.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CHROMIUM = '/usr/bin/chromium';
const READY_TIMEOUT_MS = 120_000;
const run = promisify(execFile);

const { values } = parseArgs({ options: { out: { type: 'string', default: 'docs/images' } } });
const outDir = resolve(ROOT, values.out);

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

/** Resolves when `check()` is true, polling; rejects after `timeoutMs` naming `what`. */
async function waitUntil(check, what, timeoutMs = READY_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function main() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  mkdirSync(outDir, { recursive: true });
  const ports = {
    grpc: await freePort(),
    metrics: await freePort(),
    monitor: await freePort(),
    monitorGrpc: await freePort(),
  };
  const stack = spawn(
    process.execPath,
    [
      join(ROOT, 'scripts/stack.mjs'),
      '--no-build',
      '--grpc-port',
      String(ports.grpc),
      '--metrics-port',
      String(ports.metrics),
      '--monitor-port',
      String(ports.monitor),
      '--monitor-grpc-port',
      String(ports.monitorGrpc),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LOG_LEVEL: 'warn' } },
  );
  let output = '';
  stack.stdout.on('data', (chunk) => (output += chunk.toString()));
  const stopped = new Promise((r) => stack.once('exit', r));
  let browser;
  try {
    await waitUntil(() => output.includes('MultiAgents stack ready') || stack.exitCode !== null, 'the stack');
    if (stack.exitCode !== null) throw new Error(`pnpm stack exited (${stack.exitCode}):\n${output}`);
    const cli = (...args) =>
      run(process.execPath, [join(ROOT, 'apps/cli/dist/main.js'), ...args], {
        cwd: ROOT,
        env: { ...process.env, MULTIAGENTS_ADDRESS: `127.0.0.1:${ports.grpc}` },
      });
    const txIds = [];
    for (let i = 1; i <= 8; i++) {
      const input = { orderId: `o-${i}`, total: 20 + 7 * i, ...(i % 4 === 0 ? { failShipping: true } : {}) };
      const { stdout } = await cli('start', 'order_processing', '--input', JSON.stringify(input), '--json');
      txIds.push(JSON.parse(stdout).txId);
    }
    const compensated = txIds[3];
    const base = `http://127.0.0.1:${ports.monitor}`;
    await waitUntil(async () => {
      const res = await fetch(`${base}/runs/${encodeURIComponent(compensated)}`);
      return res.ok && (await res.text()).includes('compensated');
    }, 'the compensated order on the dashboard');

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const shots = [
      ['dashboard-runs.png', '/'],
      ['dashboard-run.png', `/runs/${encodeURIComponent(compensated)}`],
      ['dashboard-workers.png', '/workers'],
    ];
    for (const [file, path] of shots) {
      await page.goto(`${base}${path}`, { waitUntil: 'load' });
      await page.waitForTimeout(500); // htmx swaps in the live parts after load
      await page.screenshot({ path: join(outDir, file), fullPage: false });
      process.stdout.write(`${join(values.out, file)}  ${path}\n`);
    }
  } finally {
    await browser?.close();
    stack.kill('SIGINT');
    await stopped;
  }
}

main().catch((err) => {
  process.stderr.write(`screenshots: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
