// Once per Jest run, before any test file: builds every project (nx, cached), then tells the
// tests' own build steps (scripts/build-quiet.sh, which integration tests call so that one file
// can run alone) to skip. A build, even a cache hit, replaces each dist/ folder (nx deletes it
// and restores it from the cache), which would pull modules out from under the services another
// Jest worker is starting at that moment. Unit-only runs (`pnpm test:unit`) build nothing.
const { execFileSync } = require('node:child_process');

module.exports = async function globalSetup(globalConfig, projectConfig) {
  if (process.env.MULTIAGENTS_TESTS_BUILT === '1') return;
  const ignored = projectConfig?.testPathIgnorePatterns ?? globalConfig?.testPathIgnorePatterns ?? [];
  if (ignored.some((pattern) => new RegExp(pattern).test('/x/any.int.spec.ts'))) return;
  try {
    execFileSync('pnpm', ['exec', 'nx', 'run-many', '-t', 'build', '--output-style=static'], {
      cwd: __dirname,
      env: { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false' },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 15 * 60_000,
    });
  } catch (err) {
    process.stderr.write(`${err.stdout ?? ''}${err.stderr ?? ''}`);
    throw new Error('the build before the tests failed (its output is above)');
  }
  // Jest's workers start after this and inherit it, and so do the processes tests spawn.
  process.env.MULTIAGENTS_TESTS_BUILT = '1';
};
