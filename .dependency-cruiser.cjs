// Module boundaries, cycles and declared dependencies for the whole workspace (`pnpm deps:check`).
//
// The layering (STYLE.md): proto → contracts → core → adapters / worker-sdk / telemetry / testing →
// embedded → apps and examples. Paths below are the *resolved* file paths: `@multiagents/x`
// resolves through pnpm's node_modules symlink to libs/x/src/index.ts (the `development` export
// condition), so one regex on the path covers both package imports and relative imports.

/** Benchmark tooling: it starts private servers and service processes like the fault tests do. */
const BENCH_FILE = '^examples/[^/]+/src/bench\\.ts$';
/** Test files: specs, `test-*.ts` helpers and anything under a `test/` or `src/testing/` folder (STYLE.md). */
const TEST_FILE = '(\\.spec\\.ts$|/test-[^/]+\\.ts$|/test/|/src/testing/)';
/**
 * Test code: test files plus libs/testing (conformance suites and helpers, imported only by tests).
 * It may use the shared test tooling declared once in the root package.json (jest, @types/jest,
 * fast-check) without declaring it again in its own package.json.
 */
const TEST_CODE = [TEST_FILE, '^libs/testing/', '^tests/', BENCH_FILE];

/**
 * Layer rule: files of the packages matching `fromPackage` may import only their own package and
 * the workspace libs in `allowed`; their test files may additionally import `testsMayAlsoImport`.
 */
function layer(name, fromPackage, allowed, comment, testsMayAlsoImport = []) {
  const rule = (suffix, from, libs, why) => ({
    name: name + suffix,
    comment: why,
    severity: 'error',
    from,
    to: { path: '^(libs|apps|examples)/', pathNot: `^libs/(${['$1', ...libs].join('|')})/` },
  });
  if (testsMayAlsoImport.length === 0) {
    return [rule('', { path: `^libs/(${fromPackage})/` }, allowed, comment)];
  }
  return [
    rule('', { path: `^libs/(${fromPackage})/`, pathNot: TEST_FILE }, allowed, comment),
    rule(
      '-in-tests',
      { path: `^libs/(${fromPackage})/.*${TEST_FILE}` },
      [...allowed, ...testsMayAlsoImport],
      `${comment} Its test files may also import ${testsMayAlsoImport.join(', ')}.`,
    ),
  ];
}

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'Import cycle (type-only imports count too). Move the shared part into a module both sides import.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment:
        'Import that cannot be resolved: a missing npm dependency, a typo, a workspace package not listed ' +
        'in this package.json (pnpm links only declared ones), or a deep import the exports map does not allow.',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'no-non-package-json',
      severity: 'error',
      comment:
        'npm package used but not declared in the nearest package.json (it resolves only because the ' +
        'root package.json has it). Add it to this package’s package.json. Test code is exempt: it may ' +
        'use the root devDependencies (jest, fast-check, @types/*).',
      from: { pathNot: TEST_CODE },
      to: { dependencyTypes: ['npm-no-pkg', 'npm-unknown'] },
    },
    {
      name: 'not-to-dev-dep',
      severity: 'error',
      comment:
        'Production code imports a devDependency: it would be missing when the package is installed. ' +
        'Move it to dependencies, or only use it from *.spec.ts files.',
      from: { path: '^(libs|apps|examples)/[^/]+/src/', pathNot: TEST_CODE },
      to: { dependencyTypes: ['npm-dev'] },
    },
    {
      name: 'testing-only-from-tests',
      severity: 'error',
      comment:
        'libs/testing (conformance suites, ManualClock, server helpers) is test code: only *.spec.ts ' +
        'and other test files import it, never production code.',
      from: { pathNot: TEST_CODE },
      to: { path: '^libs/testing/' },
    },
    {
      name: 'no-import-of-apps-or-examples',
      severity: 'error',
      comment:
        'Apps and examples are leaves of the graph: nothing imports them (libs, other apps or examples).',
      from: { path: '^(libs|apps|examples)/([^/]+)/' },
      to: { path: '^(apps|examples)/', pathNot: '^$1/$2/' },
    },
    {
      name: 'no-deep-import',
      severity: 'error',
      comment:
        'Import of another package’s internals. Import its public entry `@multiagents/<name>` ' +
        '(libs/<name>/src/index.ts) and export what you need from there.',
      from: { path: '^(libs|apps|examples)/([^/]+)/' },
      to: {
        path: '^(libs|apps|examples)/',
        pathNot: ['^$1/$2/', '^(libs|apps|examples)/[^/]+/src/index\\.ts$'],
      },
    },
    {
      name: 'no-relative-import-across-packages',
      severity: 'error',
      comment:
        'Relative path into another package. Import it by name (`@multiagents/<name>`) and declare it ' +
        'in package.json with `workspace:*`.',
      from: { path: '^(libs|apps|examples)/([^/]+)/' },
      to: { path: '^(libs|apps|examples)/', pathNot: '^$1/$2/', dependencyTypes: ['local'] },
    },
    ...layer(
      'proto-imports-no-lib',
      'proto',
      [],
      'libs/proto is generated code: it imports no workspace lib.',
    ),
    ...layer(
      'contracts-imports-only-proto',
      'contracts',
      ['proto'],
      'libs/contracts imports only libs/proto.',
    ),
    ...layer(
      'core-imports-only-contracts',
      'core',
      ['contracts'],
      'libs/core (ports and the pure engine) imports only libs/contracts: never an adapter, sdk or telemetry.',
    ),
    ...layer(
      'adapters-import-only-core-and-contracts',
      'memory|redis|nats|crypto|(?:bus|store)-[^/]+',
      ['core', 'contracts'],
      'Backends (libs/memory, libs/redis, libs/nats) and libs/crypto import only core and contracts: never each other, ' +
        'worker-sdk, telemetry or embedded.',
      // Their integration tests may drive a backend end to end with real workers.
      ['testing', 'worker-sdk'],
    ),
    ...layer(
      'sdk-and-telemetry-import-only-core-and-contracts',
      'worker-sdk|telemetry|metrics|monitor',
      ['core', 'contracts'],
      'libs/worker-sdk, libs/telemetry, libs/metrics and libs/monitor import only core and contracts.',
      // Their tests may use the in-memory adapters as test doubles (no cycle: those sit beside them).
      ['testing', 'memory'],
    ),
    ...layer(
      'agents-import-only-sdk-core-and-contracts',
      'agents',
      ['worker-sdk', 'core', 'contracts'],
      'libs/agents (LLM agents as workers) imports only worker-sdk, core (its ports) and contracts: ' +
        'never an adapter, telemetry or embedded.',
      // Its tests host agents on the in-memory bus, like worker-sdk's.
      ['testing', 'memory'],
    ),
    ...layer(
      'testing-imports-only-core-and-contracts',
      'testing',
      ['core', 'contracts'],
      'libs/testing (conformance suites, helpers) imports only core and contracts.',
    ),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Build output of workspace packages is not source. (Never exclude node_modules here: that would
    // drop every npm dependency from the graph and hide undeclared ones; doNotFollow is enough.)
    exclude: { path: '^(libs|apps|examples|tests)/[^/]+/(dist|coverage)/' },
    // Count `import type` edges too, so a cycle made only of type imports is still reported.
    tsPreCompilationDeps: true,
    // Check each import against the package.json nearest to the importing file.
    combinedDependencies: false,
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      // `development` first: @multiagents/* resolve to libs/<name>/src/index.ts, not to dist. `import`
      // last only so an ESM-only npm package without a require/default export still resolves.
      conditionNames: ['development', 'require', 'node', 'default', 'import'],
    },
    skipAnalysisNotInRules: true,
  },
};
