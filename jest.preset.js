// Shared Jest settings for every project. Tests run TypeScript sources through SWC (fast, no
// type-check: `pnpm typecheck` does that) and resolve sibling packages to their sources through
// the `development` export condition.
const path = require('node:path');

module.exports = {
  testEnvironment: 'node',
  // Tests wait on conditions, bounded; on a loaded machine they are slow, not wrong.
  testTimeout: 30_000,
  transform: { '^.+\\.(t|j)sx?$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
  // ESM-only packages (jose 6…): let SWC transform them (the optional .pnpm/ part matters under pnpm).
  transformIgnorePatterns: ['/node_modules/(?!(\\.pnpm/)?(@marcbachmann[+/]cel-js|jose)[@/])'],
  testEnvironmentOptions: { customExportConditions: ['development', 'node', 'node-addons'] },
  testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/**/*.spec.ts'],
  moduleFileExtensions: ['ts', 'js', 'mjs', 'cjs', 'json'],
  cacheDirectory: path.join(__dirname, '.jest-cache'),
};
