// Shared Jest settings for every project. Tests run TypeScript sources through SWC (fast, no
// type-check: `pnpm typecheck` does that) and resolve sibling packages to their sources through
// the `development` export condition.
const path = require('node:path');

module.exports = {
  testEnvironment: 'node',
  transform: { '^.+\\.(t|j)sx?$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
  // cockatiel 4 is ESM-only: let SWC transform it (the optional .pnpm/ part matters under pnpm).
  transformIgnorePatterns: ['/node_modules/(?!(\\.pnpm/)?(cockatiel|@marcbachmann[+/]cel-js)[@/])'],
  testEnvironmentOptions: { customExportConditions: ['development', 'node', 'node-addons'] },
  testMatch: ['<rootDir>/src/**/*.spec.ts', '<rootDir>/test/**/*.spec.ts'],
  moduleFileExtensions: ['ts', 'js', 'mjs', 'cjs', 'json'],
  cacheDirectory: path.join(__dirname, '.jest-cache'),
};
