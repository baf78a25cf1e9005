/**
 * The packed packages as a user gets them: the tarballs `pnpm packages:pack` makes, installed with
 * plain npm into a project outside the repo, then used from an ES module and from CommonJS, type-
 * checked, and the `multiagents` bin run. The global setup built and packed this checkout.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packedClone, ROOT } from './support/repo';
import { runCommand, runOk } from './support/run-command';
import { NPM_INSTALL_FLAGS, newProject, tarballsIn, userEnvironment } from './support/user-project';

jest.setTimeout(5 * 60_000);

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  main?: string;
  types?: string;
  exports?: unknown;
  bin?: Record<string, string>;
  files?: string[];
  dependencies?: Record<string, string>;
}

/** A first workflow: one order completes, one is compensated; prints both runs as JSON. */
const FIRST_WORKFLOW_BODY = `
const order = new WorkflowBuilder('order_processing')
  .step('reserve_inventory', 'inventory.reserve', { compensation: 'inventory.release' })
  .step('charge_payment', 'payment.charge', { compensation: 'payment.refund' })
  .step('ship_order', 'shipping.ship')
  .build();
const undone = [];
const workers = [
  defineWorker('inventory.reserve', (input) => ({ reservationId: 'res-' + input.orderId })),
  defineWorker('inventory.release', (input) => { undone.push('inventory.release'); return { released: true }; }),
  defineWorker('payment.charge', (input, ctx) => ({ paymentId: ctx.idempotencyKey, amount: input.total })),
  defineWorker('payment.refund', () => { undone.push('payment.refund'); return { refunded: true }; }),
  defineWorker('shipping.ship', (input) => {
    if (input.orderId === 'o-2') throw new NonRetryableError('address unknown', { code: 'ADDRESS_UNKNOWN' });
    return { trackingId: 'trk-' + input.orderId };
  }),
];
const stack = await startEmbedded({ workers, definitions: [order] });
const runs = [];
for (const orderId of ['o-1', 'o-2']) {
  const { txId } = await stack.orchestrator.startWorkflow('order_processing', { orderId, total: 42 });
  const run = await stack.orchestrator.waitForTerminal(txId);
  runs.push({ state: run.state, context: run.context, error: run.error && run.error.code });
}
await stack.close();
console.log(JSON.stringify({ runs, undone }));
`;

const ESM = `import { NonRetryableError } from '@multiagents/contracts';
import { WorkflowBuilder } from '@multiagents/core';
import { startEmbedded } from '@multiagents/embedded';
import { defineWorker } from '@multiagents/worker-sdk';
${FIRST_WORKFLOW_BODY}`;

const CJS = `const { NonRetryableError } = require('@multiagents/contracts');
const { WorkflowBuilder } = require('@multiagents/core');
const { startEmbedded } = require('@multiagents/embedded');
const { defineWorker } = require('@multiagents/worker-sdk');
async function main() {${FIRST_WORKFLOW_BODY}}
main().catch((err) => { console.error(err); process.exitCode = 1; });
`;

/** What every package's entry exports, loaded once from each module system. */
const LOAD_ALL = (names: string[], system: 'esm' | 'cjs'): string =>
  system === 'esm'
    ? `${names.map((name, i) => `import * as p${i} from '${name}';`).join('\n')}
console.log(JSON.stringify({ ${names.map((name, i) => `'${name}': Object.keys(p${i}).length`).join(', ')} }));\n`
    : `console.log(JSON.stringify({ ${names.map((name) => `'${name}': Object.keys(require('${name}')).length`).join(', ')} }));\n`;

/** A user's TypeScript, in both module systems, using the types of several packages. */
const TYPED_ESM = `import { connect, type MultiAgentsClient } from '@multiagents/client';
import { RunState, type Run, type WorkflowDefinition } from '@multiagents/contracts';
import { WorkflowBuilder } from '@multiagents/core';
import { startEmbedded } from '@multiagents/embedded';
import { defineWorker } from '@multiagents/worker-sdk';

const definition: WorkflowDefinition = new WorkflowBuilder('typed').step('a', 'typed.a').build();
const worker = defineWorker('typed.a', (input: { n: number }, ctx) => ({ doubled: input.n * 2, key: ctx.idempotencyKey }));
const stack = await startEmbedded({ workers: [worker], definitions: [definition] });
const { txId } = await stack.orchestrator.startWorkflow('typed', { n: 2 });
const run: Run = await stack.orchestrator.waitForTerminal(txId);
const done: boolean = run.state === RunState.Completed;
const client: MultiAgentsClient = connect('127.0.0.1:1');
client.close();
await stack.close();
export { done };
`;
const TYPED_CJS = `import { WorkflowBuilder } from '@multiagents/core';
import { startEmbedded } from '@multiagents/embedded';
export async function main(): Promise<string> {
  const stack = await startEmbedded({ workers: [], definitions: [new WorkflowBuilder('w').step('a', 'x').build()] });
  await stack.close();
  return 'ok';
}
`;
/** Must not compile: proof that the types are real, not `any`. */
const MISTYPED = `import { startEmbedded } from '@multiagents/embedded';
import { WorkflowBuilder } from '@multiagents/core';
export const stack = startEmbedded({ workers: 42, definitions: [] });
export const definition: string = new WorkflowBuilder('w').build();
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'nodenext',
    strict: true,
    noEmit: true,
    types: ['node'],
  },
};

describe('the packed packages, installed with npm in a project outside the repo', () => {
  let project: string;
  let tarballs: string[];
  let manifests: Manifest[];
  const env = userEnvironment();
  const node = (args: string[]) =>
    runCommand(process.execPath, args, { cwd: project, env, timeoutMs: 60_000 });

  beforeAll(async () => {
    tarballs = tarballsIn(packedClone());
    project = newProject('multiagents-user-', 'commonjs');
    // Plain npm, the tarballs and what a TypeScript user adds; nothing from this workspace.
    await runOk(
      'npm',
      ['install', ...NPM_INSTALL_FLAGS, ...tarballs, 'typescript@6.0.3', '@types/node@20.19.9'],
      { cwd: project, env, timeoutMs: 4 * 60_000 },
    );
    const installed = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')) as Manifest;
    manifests = Object.keys(installed.dependencies ?? {})
      .filter((name) => name.startsWith('@multiagents/'))
      .map(
        (name) =>
          JSON.parse(readFileSync(join(project, 'node_modules', name, 'package.json'), 'utf8')) as Manifest,
      );
  });

  afterAll(() => {
    if (project) rmSync(project, { recursive: true, force: true });
  });

  it('packs every public package: the libraries a user imports and the CLI', () => {
    const names = manifests.map((m) => m.name).sort();
    for (const name of [
      '@multiagents/agents',
      '@multiagents/backends',
      '@multiagents/cli',
      '@multiagents/client',
      '@multiagents/contracts',
      '@multiagents/core',
      '@multiagents/crypto',
      '@multiagents/embedded',
      '@multiagents/memory',
      '@multiagents/nats',
      '@multiagents/proto',
      '@multiagents/redis',
      '@multiagents/worker-sdk',
    ]) {
      expect(names).toContain(name);
    }
    expect(names).toHaveLength(tarballs.length);
  });

  it('ships manifests with real versions, no development condition, and every file they point at', () => {
    const packed = new Set(manifests.map((m) => m.name));
    for (const manifest of manifests) {
      const dir = join(project, 'node_modules', manifest.name);
      const text = JSON.stringify(manifest);
      expect({ name: manifest.name, workspace: text.includes('workspace:') }).toEqual({
        name: manifest.name,
        workspace: false,
      });
      expect({ name: manifest.name, development: text.includes('"development"') }).toEqual({
        name: manifest.name,
        development: false,
      });
      expect(manifest.private).toBeUndefined();
      expect(manifest.files).toContain('dist');
      // Sources and tests stay home: the exports point at dist/ only.
      expect(existsSync(join(dir, 'src'))).toBe(false);
      for (const target of [
        manifest.main,
        manifest.types,
        ...Object.values(manifest.bin ?? {}),
        ...(JSON.stringify(manifest.exports ?? {}).match(/\.\/[^"]+/g) ?? []),
      ]) {
        if (target === undefined) continue;
        expect({ file: join(manifest.name, target), exists: existsSync(join(dir, target)) }).toEqual({
          file: join(manifest.name, target),
          exists: true,
        });
      }
      // A dependency on one of ours is on a packed one, at its exact version.
      for (const [dependency, version] of Object.entries(manifest.dependencies ?? {})) {
        if (!dependency.startsWith('@multiagents/')) continue;
        expect(packed.has(dependency)).toBe(true);
        expect(version).toBe(manifests.find((m) => m.name === dependency)?.version);
      }
    }
  });

  it('runs a first workflow from an ES module and from CommonJS', async () => {
    writeFileSync(join(project, 'first-workflow.mjs'), ESM);
    writeFileSync(join(project, 'first-workflow.cjs'), CJS);
    // A bundler in development mode sets the `development` condition: it must not reach src/.
    for (const args of [
      ['first-workflow.mjs'],
      ['first-workflow.cjs'],
      ['--conditions=development', 'first-workflow.mjs'],
    ]) {
      const result = await node(args);
      expect({ args, code: result.code, stderr: result.stderr }).toEqual({ args, code: 0, stderr: '' });
      expect(JSON.parse(result.stdout)).toEqual({
        runs: [
          {
            state: 'completed',
            context: {
              orderId: 'o-1',
              total: 42,
              reservationId: 'res-o-1',
              paymentId: expect.stringMatching(/^[0-9a-f-]{36}:charge_payment$/),
              amount: 42,
              trackingId: 'trk-o-1',
            },
          },
          {
            state: 'compensated',
            context: expect.objectContaining({ orderId: 'o-2', reservationId: 'res-o-2' }),
            error: 'ADDRESS_UNKNOWN',
          },
        ],
        // Undone newest first.
        undone: ['payment.refund', 'inventory.release'],
      });
    }
  });

  it('loads every package from both module systems', async () => {
    const names = manifests.map((m) => m.name).filter((name) => name !== '@multiagents/cli');
    writeFileSync(join(project, 'load-all.mjs'), LOAD_ALL(names, 'esm'));
    writeFileSync(join(project, 'load-all.cjs'), LOAD_ALL(names, 'cjs'));
    for (const file of ['load-all.mjs', 'load-all.cjs']) {
      const result = await node([file]);
      expect({ file, code: result.code, stderr: result.stderr }).toEqual({ file, code: 0, stderr: '' });
      const counts = JSON.parse(result.stdout) as Record<string, number>;
      for (const name of names)
        expect({ name, exports: (counts[name] ?? 0) > 0 }).toEqual({ name, exports: true });
    }
  });

  it("type-checks a user's TypeScript, ESM and CommonJS, and rejects a mistyped one", async () => {
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
    writeFileSync(join(project, 'typed.mts'), TYPED_ESM);
    writeFileSync(join(project, 'typed.cts'), TYPED_CJS);
    const tsc = join(project, 'node_modules', 'typescript', 'bin', 'tsc');
    const ok = await node([tsc, '-p', '.']);
    expect({ code: ok.code, out: ok.stdout + ok.stderr }).toEqual({ code: 0, out: '' });

    writeFileSync(join(project, 'mistyped.mts'), MISTYPED);
    const bad = await node([tsc, '-p', '.']);
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toMatch(/mistyped\.mts\(3,\d+\): error TS2322: Type 'number' is not assignable/);
    expect(bad.stdout).toMatch(
      /mistyped\.mts\(4,\d+\): error TS2322: Type 'WorkflowDefinition' is not assignable/,
    );
    rmSync(join(project, 'mistyped.mts'));
  });

  it('installs the multiagents bin: --version is the package version, --help lists the commands', async () => {
    const { version } = JSON.parse(
      readFileSync(join(ROOT, 'apps', 'cli', 'package.json'), 'utf8'),
    ) as Manifest;
    const result = await runOk('npx', ['multiagents', '--version'], { cwd: project, env });
    expect(result.stdout).toBe(`${version}\n`);
    const help = await runOk('npx', ['multiagents', '--help'], { cwd: project, env });
    expect(help.stdout).toMatch(/^Usage: multiagents /);
    expect(help.stdout).toMatch(/^ {2}start \[options\] <workflow>/m);
  });
});
