// Test support: lets a child `node` process run the TypeScript sources directly, so the CLI and
// the orchestrator service are tested as processes without a build step (and never against a
// stale dist). Use with `node --conditions=development -r <this file> path/to/main.ts`: the
// `development` export condition resolves @multiagents/* to their src/index.ts, and this hook
// compiles each .ts file with SWC (already a dev dependency, for Jest) as it is required.
'use strict';
const { readFileSync } = require('node:fs');
const { transformSync } = require('@swc/core');

require.extensions['.ts'] = function compileTypeScript(module, filename) {
  const { code } = transformSync(readFileSync(filename, 'utf8'), {
    filename,
    jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
    module: { type: 'commonjs' },
    sourceMaps: 'inline',
  });
  module._compile(code, filename);
};
