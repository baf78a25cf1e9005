// One Jest run over every project (CI uses this; `nx run <project>:test` runs one project).
module.exports = {
  projects: [
    '<rootDir>/libs/*/jest.config.js',
    '<rootDir>/apps/*/jest.config.js',
    '<rootDir>/examples/*/jest.config.js',
    '<rootDir>/tests/*/jest.config.js',
  ],
};
