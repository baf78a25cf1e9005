import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * npm as a user runs it, kept quick and quiet: cached metadata first (it still fetches what the
 * cache lacks from the registry), no audit, no funding notice, no update check. @ax-llm/ax's
 * install script (a dependency of @multiagents/agents) would copy files into the home folder.
 */
export const NPM_INSTALL_FLAGS = ['--no-audit', '--no-fund', '--prefer-offline'];

/**
 * The environment of commands run "in a user's project": this process's, less what the
 * surrounding pnpm or npm passes to its scripts (npm_config_*, npm_package_*…), which would
 * change how npm behaves in the project.
 */
export function userEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) || key === 'INIT_CWD' || key.startsWith('MULTIAGENTS_')) continue;
    env[key] = value;
  }
  return {
    ...env,
    AX_SKIP_SKILL_INSTALL: '1',
    npm_config_update_notifier: 'false',
    ...extra,
  };
}

/** The tarballs in `<clone>/dist/packages`, as absolute paths. */
export function tarballsIn(clone: string): string[] {
  const dir = join(clone, 'dist', 'packages');
  return readdirSync(dir)
    .filter((file) => file.endsWith('.tgz'))
    .map((file) => join(dir, file));
}

/** A new empty npm project in a temporary folder (outside the repo), with `type` as given. */
export function newProject(prefix: string, type: 'module' | 'commonjs'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFileSync(
    join(dir, 'package.json'),
    `${JSON.stringify({ name: 'user-project', version: '1.0.0', private: true, type }, null, 2)}\n`,
  );
  return dir;
}
