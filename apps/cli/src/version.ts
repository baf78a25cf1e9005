import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The version of the `multiagents` package, from its package.json, which sits one folder above
 * both src/ (tests) and dist/ (installed), so it is the version that was installed.
 */
export function cliVersion(): string {
  const manifest = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as {
    version?: unknown;
  };
  return typeof manifest.version === 'string' ? manifest.version : 'unknown';
}
