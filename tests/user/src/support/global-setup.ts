/**
 * Once per Jest run, before the tests of this project: builds what they run from dist/ (nx,
 * cached) and packs the public packages with the same script users run (`pnpm packages:pack`),
 * into `<tmp>/dist/packages`. The folder reaches the test files through the environment.
 * Skipped when integration tests are excluded (`pnpm test:unit`): no test here would use it.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PACKED_CLONE_VARIABLE, PROJECTS_TO_BUILD, ROOT } from './repo';
import { runOk } from './run-command';

interface ProjectConfig {
  readonly testPathIgnorePatterns?: readonly string[];
}

export default async function globalSetup(
  _globalConfig: unknown,
  projectConfig: ProjectConfig,
): Promise<void> {
  const ignored = projectConfig.testPathIgnorePatterns ?? [];
  if (ignored.some((pattern) => new RegExp(pattern).test('/x/packaging.int.spec.ts'))) return;
  const clone = mkdtempSync(join(tmpdir(), 'multiagents-clone-'));
  const script = join(ROOT, 'scripts', 'pack-packages.mjs');
  // The public packages' names, then one nx run for them and for what the README starts.
  const listed = await runOk(process.execPath, [script, '--list'], { cwd: ROOT });
  const publicPackages = listed.stdout.split('\n').filter((name) => name !== '');
  await runOk(
    'pnpm',
    [
      'exec',
      'nx',
      'run-many',
      '-t',
      'build',
      '--projects',
      [...publicPackages, ...PROJECTS_TO_BUILD].join(','),
      '--output-style=static',
    ],
    { cwd: ROOT, env: { NX_DAEMON: 'false', NX_TUI: 'false' }, timeoutMs: 15 * 60_000 },
  );
  await runOk(process.execPath, [script, join(clone, 'dist', 'packages'), '--no-build'], {
    cwd: ROOT,
    timeoutMs: 5 * 60_000,
  });
  process.env[PACKED_CLONE_VARIABLE] = clone;
}
