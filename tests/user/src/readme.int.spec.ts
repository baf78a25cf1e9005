/**
 * The README, run as written: every block marked runnable (see its Development section) runs in
 * order, in the session it names. The `project` session is a user's new project in an empty
 * temporary folder, where the README installs the packed tarballs with npm and runs the first
 * workflow and the client example with TypeScript as a user would (tsc, tsx); the `repo` session
 * is this checkout, where it starts the orchestrator service and walks through the CLI. Each
 * block is one test, in README order; the last checks what the README says its code prints.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@multiagents/testing';
import { runnableBlocks } from './support/readme-blocks';
import { ReadmeRunner } from './support/readme-runner';
import { packedClone, ROOT } from './support/repo';
import { userEnvironment } from './support/user-project';

jest.setTimeout(6 * 60_000);

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const blocks = runnableBlocks(README);

describe('README.md, run as written', () => {
  let home: string;
  let runner: ReadmeRunner;

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), 'multiagents-readme-'));
    const grpcPort = await freePort();
    runner = new ReadmeRunner({
      sessions: { project: home, repo: ROOT },
      env: userEnvironment({
        // A free port instead of 50051, so the test never meets a service of yours.
        GRPC_PORT: String(grpcPort),
        MULTIAGENTS_ADDRESS: `127.0.0.1:${grpcPort}`,
        npm_config_prefer_offline: 'true',
        npm_config_audit: 'false',
        npm_config_fund: 'false',
      }),
      grpcPort,
      placeholders: { clone: packedClone() },
      commandTimeoutMs: 4 * 60_000,
    });
  });

  afterAll(async () => {
    await runner?.close();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('has the runnable blocks the README promises: project setup, first workflow, CLI walk-through, client', () => {
    const files = blocks.flatMap((block) => (block.file === undefined ? [] : [block.file]));
    expect(files).toEqual(expect.arrayContaining(['tsconfig.json', 'first-workflow.ts', 'start-order.ts']));
    expect(blocks.filter((block) => block.background)).toHaveLength(1);
    expect(
      blocks.some((block) => block.session === 'repo' && /multiagents get <txId>/.test(block.code)),
    ).toBe(true);
  });

  // One test per block, in README order; a failure names the README line and shows the output.
  it.each(
    blocks.map(
      (block) =>
        [
          `line ${block.line}: ${block.language} ${block.session}${block.file ? ` → ${block.file}` : ''}${block.background ? ' (background)' : ''}`,
          block,
        ] as const,
    ),
  )('README %s', async (_name, block) => {
    await runner.run(block);
  });

  it('prints what the README says it prints', () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'apps', 'cli', 'package.json'), 'utf8')) as {
      version: string;
    };
    expect(runner.outputsOf(/npx multiagents --version/)).toEqual([`${version}\n`]);
    const [firstWorkflow] = runner.outputsOf(/npx tsx first-workflow\.ts/);
    expect(firstWorkflow).toMatch(/^completed \{/);
    expect(firstWorkflow).toMatch(/trackingId: 'trk-o-1'/);

    const [completed] = runner.outputsOf(/"orderId":"o-1".*--watch/);
    expect(completed).toMatch(/ run completed\nrun [0-9a-f-]{36} ended completed in /);
    const [compensated] = runner.outputsOf(/"orderId":"o-2".*--watch/);
    expect(compensated).toMatch(/undo reserve_inventory completed.*\n.* run compensated — CARRIER_REFUSED/);
    const [get] = runner.outputsOf(/multiagents get /);
    expect(get).toMatch(/^state +compensated$/m);
    // The approval run: the watch in the background saw the signal complete it. The signal command
    // runs while the watch prints, so its one line may land between the watch's lines: it is
    // checked on its own, then left out before the watch's lines are checked in order.
    const signalLine = /^signal approved delivered; run [0-9a-f-]{36} is \w+$/;
    const repoLines = runner.transcript('repo').split('\n');
    expect(repoLines.filter((line) => signalLine.test(line))).toHaveLength(1);
    expect(repoLines.filter((line) => !signalLine.test(line)).join('\n')).toMatch(
      /approve completed[^\n]*\n.* run completed\nrun [0-9a-f-]{36} ended completed/,
    );

    const [client] = runner.outputsOf(/npx tsx start-order\.ts/);
    expect(client?.trim().split('\n').at(-1)).toBe('completed');
  });
});
