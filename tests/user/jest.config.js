// Builds the public packages, the orchestrator and the order example, and packs the packages once
// per Jest run (src/support/global-setup.ts), for the tests that install them or run the README.
module.exports = {
  ...require('../../jest.preset.js'),
  displayName: '@multiagents/user-tests',
  globalSetup: '<rootDir>/src/support/global-setup.ts',
  globalTeardown: '<rootDir>/src/support/global-teardown.ts',
};
