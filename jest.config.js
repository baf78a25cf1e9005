// One Jest run over every project (CI uses this; `nx run <project>:test` runs one project).
const { availableParallelism } = require('node:os');

module.exports = {
  projects: [
    '<rootDir>/libs/*/jest.config.js',
    '<rootDir>/apps/*/jest.config.js',
    '<rootDir>/examples/*/jest.config.js',
    '<rootDir>/tests/*/jest.config.js',
  ],
  // Two workers at least: most integration suites wait on servers and child processes rather than
  // use the CPU, so on 2 cores (CI) a second worker nearly halves the run; Jest's default there is
  // one. Every test waits on conditions, never on the clock, so the extra load changes no outcome.
  maxWorkers: Math.max(2, availableParallelism() - 1),
  // The fault suites first, so they run beside the rest instead of after it (see the file).
  testSequencer: '<rootDir>/jest.sequencer.js',
  // One build before every test file, none during them (see the file).
  globalSetup: '<rootDir>/jest.global-setup.js',
};
