// ESLint flat config for the whole workspace. `pnpm lint` lints every package's src in one run
// (a package's own `eslint src` finds this file by looking upward). Typed rules read one program
// of the whole workspace, tsconfig.workspace.json (the options of every package's tsconfig.json).
// A project per package (the project service) checked a package's sources again for every package
// that imports them: five times the time.
import { defineConfig, globalIgnores } from 'eslint/config';
import eslintConfigPrettier from 'eslint-config-prettier/flat';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/**
 * `// eslint-disable-next-line rule -- reason`: every disable directive must say why after ` -- `.
 * (ESLint itself accepts a description but does not require one.)
 */
const requireDisableReason = {
  meta: {
    type: 'suggestion',
    docs: { description: 'Require a `-- reason` on every eslint-disable directive' },
    schema: [],
    messages: { missing: 'State why after ` -- ` in this {{kind}} comment.' },
  },
  create(context) {
    return {
      Program() {
        for (const comment of context.sourceCode.getAllComments()) {
          const match = /^\s*(eslint-disable(?:-next-line|-line)?)(?:\s|$)/.exec(comment.value);
          if (match && !/\s--\s*\S/.test(comment.value)) {
            context.report({ loc: comment.loc, messageId: 'missing', data: { kind: match[1] } });
          }
        }
      },
    };
  },
};

export default defineConfig(
  globalIgnores([
    '**/dist/**',
    '**/coverage/**',
    'libs/proto/src/gen/**',
    '**/jest.config.js',
    'jest.preset.js',
    'jest.config.js',
    '.nx/**',
    '.jest-cache/**',
    '.ci-out/**',
    '**/node_modules/**',
  ]),

  tseslint.configs.recommendedTypeChecked,

  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: {
        project: ['./tsconfig.workspace.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    plugins: { local: { rules: { 'require-disable-reason': requireDisableReason } } },
    rules: {
      'local/require-disable-reason': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // Off on purpose: ports return promises, so in-memory adapters and bus handlers are `async`
      // without awaiting anything (and turn a throw into a rejection). The two rules above catch
      // the real promise bugs.
      '@typescript-eslint/require-await': 'off',
      // `any` needs `// eslint-disable-next-line @typescript-eslint/no-explicit-any -- <reason>`.
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          args: 'after-used',
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // Libraries and services log through the Logger port (pino), never console.
      'no-console': 'error',
    },
  },

  {
    // Programs whose output *is* the terminal: the CLI, and the example's demo and benchmark.
    files: ['apps/cli/**', 'examples/**/main.ts', 'examples/**/bench.ts'],
    rules: { 'no-console': 'off' },
  },

  {
    // Jest: `expect(port.method).toHaveBeenCalled()` and loosely typed fixtures/matchers.
    files: ['**/*.spec.ts'],
    languageOptions: { globals: { ...globals.jest } },
    rules: {
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },

  {
    // Plain JS config files (if linted explicitly) are in no tsconfig: lint them without types.
    files: ['**/*.{js,cjs,mjs}'],
    extends: [tseslint.configs.disableTypeChecked],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },

  eslintConfigPrettier,
);
